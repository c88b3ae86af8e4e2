os_name    = "debian"
os_version = "13"
iso_url    = "https://deb.example/debian-13-amd64-netinst.iso"

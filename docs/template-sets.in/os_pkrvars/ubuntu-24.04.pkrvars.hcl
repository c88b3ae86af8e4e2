os_name    = "ubuntu"
os_version = "24.04"
iso_url    = "https://ubuntu.example/ubuntu-24.04-live-server-amd64.iso"
memory     = 4096

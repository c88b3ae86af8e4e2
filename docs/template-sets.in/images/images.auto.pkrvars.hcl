cpus   = 2
memory = 2048

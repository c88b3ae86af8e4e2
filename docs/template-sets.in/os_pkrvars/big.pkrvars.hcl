cpus   = 8
memory = 16384

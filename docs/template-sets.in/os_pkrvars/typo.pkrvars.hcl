cpus   = 4
memroy = 8192

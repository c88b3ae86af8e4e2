# the template's own var file, which Packer loads by itself
vm_name = "x"
size = [1, 2

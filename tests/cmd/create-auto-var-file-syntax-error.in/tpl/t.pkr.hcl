variable "vm_name" {
  type = string
}

source "null" "a" {
  communicator = "none"
}

build {
  sources = ["source.null.a"]
}

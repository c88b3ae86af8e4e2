# The cheapest real build: one Packer start, no provisioner, no artifact.
variable "vm_name" {
  type = string
}

source "null" "quick" {
  communicator = "none"
}

build {
  sources = ["source.null.quick"]
}

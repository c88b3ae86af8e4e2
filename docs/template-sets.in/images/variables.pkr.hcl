# Set by sandboxer.
variable "vm_name" {
  type    = string
  default = "image"
}

variable "output_directory" {
  type    = string
  default = "output"
}

# Set by each OS's var file.
variable "os_name" {
  type = string
}

variable "os_version" {
  type = string
}

variable "iso_url" {
  type = string
}

# Shared defaults; the team's images.auto.pkrvars.hcl may change them.
variable "cpus" {
  type    = number
  default = 1
}

variable "memory" {
  type    = number
  default = 1024
}

variable "disk_size" {
  type    = number
  default = 20480
}

# The smallest template of the expected shape: a null source (no hypervisor), an OVA written by
# a shell-local step and reported by artifice.
variable "project" {
  type = string
}

variable "vm_name" {
  type = string
}

variable "output_directory" {
  type = string
}

source "null" "haskell" {
  communicator = "none"
}

build {
  sources = ["source.null.haskell"]

  post-processors {
    post-processor "shell-local" {
      inline = ["echo 'a build machine for ${var.project}' > '${var.output_directory}/${var.vm_name}.ova'"]
    }

    post-processor "artifice" {
      files = ["${var.output_directory}/${var.vm_name}.ova"]
    }
  }
}

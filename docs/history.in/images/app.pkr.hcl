# The app image: a null source, so it builds anywhere in a fraction of a second.
variable "vm_name" {
  type = string
}

variable "output_directory" {
  type    = string
  default = "output"
}

variable "token" {
  type      = string
  sensitive = true
  default   = ""
}

source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.app"]

  post-processors {
    post-processor "shell-local" {
      inline = ["echo app image > \"${var.output_directory}/${var.vm_name}.ova\""]
    }

    post-processor "artifice" {
      files               = ["${var.output_directory}/${var.vm_name}.ova"]
      keep_input_artifact = false
    }
  }
}

# A build that fails: it leaves a partial file in the output directory, then the provisioner
# explains itself on stderr and exits 1.
variable "vm_name" {
  type    = string
  default = "fail"
}

variable "output_directory" {
  type    = string
  default = "output"
}

source "null" "fail" {
  communicator = "none"
}

build {
  sources = ["source.null.fail"]

  provisioner "shell-local" {
    inline = [
      "echo partial > \"${var.output_directory}/${var.vm_name}.partial\"",
      "echo 'fixture: disk quota exceeded while writing the image' >&2",
      "exit 1",
    ]
  }
}

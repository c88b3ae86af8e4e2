# Builds an OVA with no hypervisor and no network: a null source, then a
# shell-local post-processor that runs make-ova.sh (qemu-img + tar), then an
# artifice post-processor so Packer reports the OVA as the build's artifact.
#
# Written for Packer 1.6.6 (no packer {} block, no data blocks); also valid HCL2
# for newer releases.

variable "vm_name" {
  type        = string
  default     = "example-vm"
  description = "Name of the VM and of the OVA file; only A-Z a-z 0-9 . _ - and no leading '-'."
}

variable "output_directory" {
  type        = string
  default     = "output"
  description = "Directory that receives <vm_name>.ova; relative paths resolve against Packer's working directory."
}

variable "disk_size" {
  type        = string
  default     = "64M"
  description = "Virtual size of the (empty) disk, in qemu-img syntax (e.g. 64M, 1G)."
}

source "null" "example" {
  communicator = "none"
}

build {
  sources = ["source.null.example"]

  post-processors {
    post-processor "shell-local" {
      # path.root is the template's directory relative to Packer's working
      # directory ("." when run from here); abspath() makes the log readable.
      script = "${abspath(path.root)}/make-ova.sh"

      # Values reach the script only as environment variables; Packer single-
      # quotes them in {{.Vars}}.
      environment_vars = [
        "VM_NAME=${var.vm_name}",
        "OUTPUT_DIRECTORY=${var.output_directory}",
        "DISK_SIZE=${var.disk_size}",
      ]

      # The default execute_command splices {{.Script}} unquoted into a shell
      # string, which breaks when the template's path contains a space. Pass
      # the script path as a positional argument instead ($1), and run it with
      # /bin/sh so a lost executable bit does not matter.
      execute_command = ["/bin/sh", "-c", "{{.Vars}} /bin/sh \"$1\"", "make-ova", "{{.Script}}"]
    }

    # Reports the OVA as an artifact. The path is printed as written here, so a
    # relative output_directory gives a path relative to Packer's working
    # directory. keep_input_artifact = false drops the intermediate copy of the
    # null artifact that shell-local passes on; the null builder's own artifact
    # is still listed first, because shell-local always keeps its input.
    post-processor "artifice" {
      files               = ["${var.output_directory}/${var.vm_name}.ova"]
      keep_input_artifact = false
    }
  }
}

# One source per hypervisor; the OS comes from a var file.
# (The null builder stands in for qemu and virtualbox-iso here, so this page needs neither.)
source "null" "qemu" {
  communicator = "none"
}

source "null" "virtualbox" {
  communicator = "none"
}

build {
  sources = ["source.null.qemu", "source.null.virtualbox"]

  provisioner "shell-local" {
    inline = [
      "mkdir -p \"${var.output_directory}\"",
      "echo \"${var.os_name} ${var.os_version} cpus=${var.cpus} memory=${var.memory}\" > \"${var.output_directory}/${var.vm_name}-${source.name}.ova\"",
    ]
  }

  post-processor "artifice" {
    files               = ["${var.output_directory}/${var.vm_name}-${source.name}.ova"]
    keep_input_artifact = false
  }
}

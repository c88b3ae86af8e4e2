#!/bin/sh
# Build an OVA (OVF 1.0 descriptor + SHA256 manifest + streamOptimized VMDK)
# without a hypervisor, using only qemu-img, sha256sum and tar.
#
# Inputs (environment):
#   VM_NAME           name of the VM and of the files; [A-Za-z0-9._-], no leading '-'
#   OUTPUT_DIRECTORY  where <VM_NAME>.ova is written (created if missing; may be relative)
#   DISK_SIZE         virtual disk size for qemu-img, e.g. 64M (default 64M)
#
# Result: OUTPUT_DIRECTORY/VM_NAME.ova and nothing else. The OVA is assembled in a
# temporary directory inside OUTPUT_DIRECTORY and renamed into place at the end.
set -eu

# Byte-wise pattern matching and stable tool messages.
LC_ALL=C
export LC_ALL

prog=make-ova.sh

die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}

VM_NAME=${VM_NAME-}
OUTPUT_DIRECTORY=${OUTPUT_DIRECTORY-}
DISK_SIZE=${DISK_SIZE:-64M}

# --- validate inputs -------------------------------------------------------
case $VM_NAME in
    '') die "VM_NAME is empty" ;;
    -*) die "VM_NAME must not start with '-': '$VM_NAME'" ;;
    . | ..) die "VM_NAME must not be '.' or '..'" ;;
    *[!A-Za-z0-9._-]*) die "VM_NAME may only contain A-Z a-z 0-9 . _ - : '$VM_NAME'" ;;
esac
# Longest tar member is "<VM_NAME>-disk1.vmdk"; ustar member names hold 100 bytes.
if [ "${#VM_NAME}" -gt 64 ]; then
    die "VM_NAME is longer than 64 characters"
fi

case $DISK_SIZE in
    '' | *[!0-9bBkKmMgGtTpPeE]* | [!0-9]* | *[bBkKmMgGtTpPeE]?*)
        die "DISK_SIZE must be a number with an optional unit suffix (e.g. 64M): '$DISK_SIZE'" ;;
esac

[ -n "$OUTPUT_DIRECTORY" ] || die "OUTPUT_DIRECTORY is empty"
# Make relative paths start with ./ so that neither qemu-img (protocol prefixes
# such as "nbd:") nor any other tool can mistake them for options or URLs.
case $OUTPUT_DIRECTORY in
    /*) out=$OUTPUT_DIRECTORY ;;
    *) out=./$OUTPUT_DIRECTORY ;;
esac

for tool in qemu-img sha256sum tar mktemp; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if [ "$tool" = qemu-img ]; then
            die "qemu-img not found in PATH; install it (Debian/Ubuntu: apt-get install qemu-utils)"
        fi
        die "$tool not found in PATH"
    fi
done

# --- working directory -----------------------------------------------------
mkdir -p -- "$out" || die "cannot create output directory '$OUTPUT_DIRECTORY'"

tmp=
cleanup() {
    if [ -n "$tmp" ]; then
        rm -rf -- "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# Inside the output directory so the final rename is atomic (same filesystem).
tmp=$(mktemp -d "$out/.$VM_NAME.ova.tmp.XXXXXX") ||
    die "cannot create a temporary directory in '$OUTPUT_DIRECTORY'"

ovf=$VM_NAME.ovf
mf=$VM_NAME.mf
vmdk=$VM_NAME-disk1.vmdk
ova=$out/$VM_NAME.ova

# --- disk ------------------------------------------------------------------
echo "creating disk ($DISK_SIZE qcow2)"
qemu-img create -q -f qcow2 "$tmp/disk.qcow2" "$DISK_SIZE"

echo "converting disk to streamOptimized VMDK"
qemu-img convert -q -f qcow2 -O vmdk \
    -o subformat=streamOptimized,adapter_type=lsilogic \
    "$tmp/disk.qcow2" "$tmp/$vmdk"
rm -f -- "$tmp/disk.qcow2"

# Virtual size in bytes as qemu-img sees the VMDK (size rounded to sectors).
# Only the unindented "virtual size: ... (N bytes)" line is the image's own;
# indented lines describe child nodes (the file itself) in newer qemu-img.
capacity=$(qemu-img info -f vmdk "$tmp/$vmdk" |
    sed -n 's/^virtual size:.*(\([0-9][0-9]*\) bytes).*/\1/p' | head -n 1)
[ -n "$capacity" ] || die "could not read the virtual size of the VMDK"
vmdk_size=$(wc -c <"$tmp/$vmdk" | tr -d ' ')

# --- OVF descriptor --------------------------------------------------------
echo "writing OVF descriptor"
# VM_NAME is restricted to [A-Za-z0-9._-], so it needs no XML escaping.
cat >"$tmp/$ovf" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<Envelope ovf:version="1.0" xml:lang="en-US"
    xmlns="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="$vmdk" ovf:id="file1" ovf:size="$vmdk_size"/>
  </References>
  <DiskSection>
    <Info>List of the virtual disks</Info>
    <Disk ovf:capacity="$capacity" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="NAT">
      <Description>The NAT network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="$VM_NAME">
    <Info>A virtual machine</Info>
    <Name>$VM_NAME</Name>
    <OperatingSystemSection ovf:id="1">
      <Info>The kind of installed guest operating system</Info>
      <Description>Other</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>$VM_NAME</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-07</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>1 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>1</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory size</rasd:Description>
        <rasd:ElementName>512 MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>512</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI controller</rasd:Description>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
EOF

# --- manifest --------------------------------------------------------------
echo "writing manifest"
# Plain assignments, so that set -e catches a failing sha256sum.
ovf_sum=$(sha256sum <"$tmp/$ovf")
vmdk_sum=$(sha256sum <"$tmp/$vmdk")
{
    printf 'SHA256(%s)= %s\n' "$ovf" "${ovf_sum%% *}"
    printf 'SHA256(%s)= %s\n' "$vmdk" "${vmdk_sum%% *}"
} >"$tmp/$mf"

# --- OVA -------------------------------------------------------------------
echo "packing OVA $ova"
# OVF 1.0 requires the descriptor first, then the manifest, then the files.
tar --format=ustar --owner=0 --group=0 --numeric-owner \
    -cf "$tmp/$VM_NAME.ova.part" -C "$tmp" -- "$ovf" "$mf" "$vmdk"
mv -f -- "$tmp/$VM_NAME.ova.part" "$ova"

echo "created $ova ($(wc -c <"$ova" | tr -d ' ') bytes)"

# SPDX-License-Identifier: MIT
# nbdkit-functions.sh: helpers for the nbdkit plugin's tests
# (tests/integration/test-nbdkit-plugin-*.sh), sourced after functions.sh.
#
#   requires_plugin    skip unless nbdkit is installed and this build made
#                      the plugin; sets $plugin to the .so in the build dir
#                      (nbdkit loads it by path, nothing is installed)
#   $py                /usr/bin/python3 -I (Debian's nbd module loads there)

requires_plugin()
{
	requires nbdkit nbdinfo
	plugin=$(dirname "$DISKSTACK")/nbdkit-diskstack-plugin.so
	if [ ! -f "$plugin" ]; then
		# The build left it out on purpose (configure --without-nbdkit,
		# or no nbdkit-plugin-dev): not a broken set-up.
		echo "$0: the nbdkit plugin is not in this build (no nbdkit-plugin-dev, or --without-nbdkit), skipping"
		exit 77
	fi
}

py="/usr/bin/python3 -I"

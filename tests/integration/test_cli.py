"""The `cloud` CLI as a user runs it, against a real `cloud dev`: profiles in the
config file, -o table|json|yaml, errors that say what to do, shell completion,
and `cloud openapi`."""
import json
import os
import re
import shutil
import stat
import subprocess
import time
import uuid

import pytest
import requests
import yaml

from cloudtest import CLOUD_BIN, REPO_ROOT, free_port

PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.needs_binary


@pytest.fixture(scope="module")
def api(server):
    url = f"http://127.0.0.1:{server.api_port}"
    deadline = time.time() + 30
    while True:
        try:
            if requests.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return url
        except requests.ConnectionError:
            pass
        assert time.time() < deadline, "the control plane did not become ready"
        time.sleep(0.1)


@pytest.fixture
def home(tmp_path):
    """An environment with its own HOME and no CLOUD_* variables: the CLI finds its config in
    $HOME/.config/cloud/config as it would for a user."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUD_") and k != "XDG_CONFIG_HOME"}
    env["HOME"] = str(tmp_path)
    return env


def cloud(args, env, input=None, check=True):
    r = subprocess.run([CLOUD_BIN] + args, env=env, input=input, capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"cloud {' '.join(args)}: {r.stdout}\n{r.stderr}"
    # Whatever happens, no crash and no stack trace.
    assert "Fatal error" not in r.stderr and "Stack dump" not in r.stderr and "Current stack trace" not in r.stderr, r.stderr
    return r


def new_email(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def register(api, env, prefix):
    email = new_email(prefix)
    cloud(["auth", "register", "--email", email, "--name", prefix.title(), "--password-stdin", "--api-url", api], env,
          input=PASSWORD + "\n")
    return email


def login(api, env, email, *extra):
    return cloud(["auth", "login", "--email", email, "--password-stdin", "--api-url", api, *extra], env,
                 input=PASSWORD + "\n")


def test_profiles_switch_between_users(api, home, tmp_path):
    ada = register(api, home, "ada")
    bob = register(api, home, "bob")
    # No CLOUD_API_URL from here on: the URL comes from the profile login wrote.
    login(api, home, ada)
    login(api, home, bob, "--profile", "bob")
    config = tmp_path / ".config" / "cloud" / "config"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    text = config.read_text()
    assert "[profile default]" in text and "[profile bob]" in text
    assert f"api_url = {api}" in text

    def me(*extra, env=home):
        return json.loads(cloud(["auth", "me", "-o", "json", *extra], env).stdout)["user"]["email"]

    assert me() == ada
    assert me("--profile", "bob") == bob
    assert me(env={**home, "CLOUD_PROFILE": "bob"}) == bob

    listing = json.loads(cloud(["config", "list", "-o", "json"], home).stdout)
    assert listing["current_profile"] == "default"
    assert [p["name"] for p in listing["profiles"]] == ["default", "bob"]
    # Secrets are masked when listed, and available unmasked to scripts with `config get`.
    key = cloud(["config", "get", "api_key", "--profile", "bob"], home).stdout.strip()
    assert key.startswith("ck_") and key not in json.dumps(listing)
    assert listing["profiles"][1]["api_key"] == key[:20] + "…"
    table = cloud(["config", "list"], home).stdout
    assert re.search(r"^\* default\s+" + re.escape(api), table, re.M), table

    r = cloud(["config", "use", "bob"], home)
    assert "bob" in r.stdout
    assert me() == bob
    assert "current_profile = bob" in config.read_text()
    r = cloud(["config", "use", "nosuch"], home, check=False)
    assert r.returncode != 0 and "no profile \"nosuch\"" in r.stderr and "default, bob" in r.stderr

    # A new profile made by hand, then deleted.
    cloud(["config", "set", "api_url", "http://127.0.0.1:1/", "--profile", "broken"], home)
    assert json.loads(cloud(["config", "show", "broken", "-o", "json"], home).stdout)["api_url"] == "http://127.0.0.1:1"
    r = cloud(["config", "set", "api_ur", "x"], home, check=False)
    assert r.returncode != 0 and "api_url" in r.stderr
    r = cloud(["config", "set", "api_url", "localhost:8080"], home, check=False)
    assert r.returncode != 0 and "http://" in r.stderr
    cloud(["config", "delete", "bob"], home)
    assert "[profile bob]" not in config.read_text()
    # No current profile any more: "default" again.
    assert me() == ada
    cloud(["config", "delete", "broken"], home)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_login_writes_the_profile_named_and_keeps_the_others(api, home, tmp_path):
    config = tmp_path / "custom" / "cloud.ini"
    env = {**home, "CLOUD_CONFIG": str(config)}
    cloud(["config", "set", "s3_endpoint", "http://127.0.0.1:9000", "--profile", "work"], env)
    cloud(["config", "set", "s3_access_key", "AKEXAMPLE", "--profile", "work"], env)
    cloud(["config", "set", "s3_secret_key", "SECRETEXAMPLE", "--profile", "work"], env)
    ada = register(api, env, "ada")
    r = login(api, env, ada, "--profile", "work")
    assert "work" in r.stdout and str(config) in r.stdout
    shown = json.loads(cloud(["config", "show", "work", "-o", "json"], env).stdout)
    assert shown["s3_endpoint"] == "http://127.0.0.1:9000" and shown["s3_access_key"] == "AKEXAMPLE"
    assert shown["s3_secret_key"] == "****" and shown["email"] == ada
    assert "SECRETEXAMPLE" in config.read_text()
    # XDG_CONFIG_HOME is honoured when CLOUD_CONFIG is not set.
    xdg = {**home, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    cloud(["config", "set", "api_url", api], xdg)
    assert (tmp_path / "xdg" / "cloud" / "config").exists()


def test_a_config_file_of_the_earlier_format_is_read_and_migrated(api, home, tmp_path):
    ada = register(api, home, "ada")
    key = requests.post(f"{api}/auth/login", json={"email": ada, "password": PASSWORD}).json()["api_key"]
    config = tmp_path / ".config" / "cloud" / "config"
    config.parent.mkdir(parents=True)
    # Exactly what `cloud auth login` wrote before profiles.
    config.write_text(f"[default]\napi_key = {key}\napi_url = {api}\nemail = {ada}\n")
    config.chmod(0o600)
    r = cloud(["auth", "me", "-o", "json"], home)
    assert json.loads(r.stdout)["user"]["email"] == ada
    assert "converted" in r.stderr
    text = config.read_text()
    assert "[profile default]" in text and f"api_key = {key}" in text and "\n[default]" not in text
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    # The second run has nothing to convert.
    assert "converted" not in cloud(["auth", "me"], home).stderr


def test_output_formats_parse(api, home):
    ada = register(api, home, "ada")
    login(api, home, ada)
    for command in (["auth", "me"], ["auth", "keys", "list"], ["roles", "list"], ["roles", "list-bindings"],
                    ["config", "list"], ["config", "show"]):
        as_json = json.loads(cloud(command + ["-o", "json"], home).stdout)
        as_yaml = yaml.safe_load(cloud(command + ["-o", "yaml"], home).stdout)
        assert as_yaml == as_json, command
    # The API's key order is kept.
    me = cloud(["auth", "me", "-o", "json"], home).stdout
    assert list(json.loads(me)) == list(requests.get(f"{api}/auth/me", headers={
        "X-API-Key": cloud(["config", "get", "api_key"], home).stdout.strip()}).json())
    assert me.index('"user"') < me.index('"roles"')
    # Tables: a header and aligned columns.
    table = cloud(["roles", "list"], home).stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "BUILTIN", "PERMISSIONS"]
    column = table[0].index("PERMISSIONS")
    assert all(line[column - 2:column] == "  " for line in table[1:]), table
    assert any(line.startswith("admin ") for line in table)
    # The profile's default output format.
    cloud(["config", "set", "output", "yaml"], home)
    assert yaml.safe_load(cloud(["roles", "list"], home).stdout)["roles"][0]["name"] == "admin"
    assert cloud(["roles", "list", "-o", "table"], home).stdout.startswith("NAME")
    r = cloud(["roles", "list", "-o", "xml"], home, check=False)
    assert r.returncode != 0 and "table, json or yaml" in r.stderr


def test_errors_say_what_failed_and_what_to_do(api, server, home):
    down = f"http://127.0.0.1:{free_port()}"
    r = cloud(["auth", "me", "--api-url", down], {**home, "CLOUD_API_KEY": "ck_0123456789abcdef_" + "x" * 43}, check=False)
    assert r.returncode != 0
    assert f"cannot reach {down}: connection refused" in r.stderr and "cloud dev" in r.stderr and "--api-url" in r.stderr
    assert r.stdout == ""

    r = cloud(["auth", "me", "--api-url", api], home, check=False)
    assert r.returncode != 0 and "not logged in" in r.stderr and "cloud auth login" in r.stderr

    ada = register(api, home, "ada")
    login(api, home, ada)
    key_id = [k["id"] for k in json.loads(cloud(["auth", "keys", "list", "-o", "json"], home).stdout)["keys"]][0]
    # Revoke the key the profile holds.
    cloud(["auth", "keys", "delete", key_id], home)
    r = cloud(["auth", "me"], home, check=False)
    assert r.returncode != 0 and "your API key was refused" in r.stderr and "cloud auth login" in r.stderr
    login(api, home, ada)

    r = cloud(["roles", "delete", "nosuch"], home, check=False)
    assert r.returncode != 0 and "not found" in r.stderr and "404" in r.stderr

    # A viewer in Ada's tenant tries to create a role: the missing permission is named.
    tenant = json.loads(cloud(["auth", "me", "-o", "json"], home).stdout)["tenant"]["id"]
    bob = register(api, home, "bob")
    cloud(["roles", "bind", bob, "viewer"], home)
    login(api, home, bob, "--profile", "bob", "--tenant", tenant)
    r = cloud(["roles", "create", "ops", "--permissions", "role:read", "--profile", "bob"], home, check=False)
    assert r.returncode != 0
    assert "permission denied" in r.stderr and "role:create" in r.stderr and "403" in r.stderr

    # Too many failed logins: 429 with when to try again.
    carol = register(api, home, "carol")
    for _ in range(5):
        r = cloud(["auth", "login", "--email", carol, "--password-stdin", "--api-url", api], home,
                  input="wrong password here\n", check=False)
        assert r.returncode != 0 and "invalid_credentials" in r.stderr
    r = cloud(["auth", "login", "--email", carol, "--password-stdin", "--api-url", api], home,
              input=PASSWORD + "\n", check=False)
    assert r.returncode != 0 and "429" in r.stderr and re.search(r"try again in \d+ (seconds|minutes)", r.stderr), r.stderr

    # The S3 port is not the API.
    r = cloud(["auth", "me", "--api-url", f"http://127.0.0.1:{server.port}"], home, check=False)
    assert r.returncode != 0 and "not the control plane" in r.stderr and "S3" in r.stderr, r.stderr


def test_a_broken_config_file_is_named_with_its_line(home, tmp_path):
    config = tmp_path / ".config" / "cloud" / "config"
    config.parent.mkdir(parents=True)
    config.write_text("[profile a]\napi_url http://x\n")
    r = cloud(["config", "list"], home, check=False)
    assert r.returncode != 0 and str(config) in r.stderr and "line 2" in r.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell, home):
    script = cloud(["completion", shell], home).stdout
    assert "cloud" in script and "config" in script and "profile" in script
    if shell == "zsh":
        assert script.startswith("#compdef cloud")
    if shell == "fish":
        assert "complete -c 'cloud'" in script
    if shell == "bash":
        assert "complete -o filenames -F _cloud cloud" in script


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_and_profile_names(home, tmp_path):
    cloud(["config", "set", "api_url", "http://127.0.0.1:1", "--profile", "staging"], home)
    cloud(["config", "set", "api_url", "http://127.0.0.1:2", "--profile", "prod"], home)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cloud").symlink_to(os.path.abspath(CLOUD_BIN))
    env = {**home, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}

    def complete(line):
        words = line.split(" ")
        program = f"""
            source <(cloud completion bash)
            COMP_LINE={json.dumps(line)}; COMP_POINT=${{#COMP_LINE}}
            COMP_WORDS=({" ".join(json.dumps(w) for w in words)}); COMP_CWORD={len(words) - 1}
            _cloud cloud {json.dumps(words[-1])} {json.dumps(words[-2])}
            printf '%s\\n' "${{COMPREPLY[@]}}"
        """
        r = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        return set(r.stdout.split())

    assert "config" in complete("cloud con")
    assert complete("cloud config use ") == {"staging", "prod"}
    assert complete("cloud auth me --profile ") == {"staging", "prod"}
    assert {"table", "json", "yaml"} <= complete("cloud roles list -o ")


def test_completion_of_an_unknown_shell_fails(home):
    r = cloud(["completion", "tcsh"], home, check=False)
    assert r.returncode != 0 and "bash, zsh or fish" in r.stderr


def test_openapi_document_and_reference(api, home):
    local = json.loads(cloud(["openapi"], home).stdout)
    served = requests.get(f"{api}/openapi.json").json()
    assert local == served
    assert local["paths"]["/rbac/roles"]["post"]["responses"]["403"]["x-error-codes"] == ["forbidden"]
    remote = json.loads(cloud(["openapi", "--api-url", api], home).stdout)
    assert remote == served
    markdown = cloud(["openapi", "--markdown"], home).stdout
    assert markdown == (REPO_ROOT / "docs" / "api.md").read_text(), \
        "docs/api.md is out of date: run `make api-docs` and commit it"

"""`chroma-ha token new`: the token is printed once, its entry holds only its hash and grants what was asked, and
`--file` appends the entry to a token file, created readable by its owner only, refusing one that would break it."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from chroma_ha.cli.main import cli
from chroma_ha.cli.serve import is_loopback
from chroma_ha.gateway.auth import Gate
from chroma_ha.gateway.tokens import ALL, digest_of, parse_token_file


def test_the_printed_entry_grants_the_printed_token_what_was_asked() -> None:
    result = CliRunner().invoke(cli, ["token", "new", "--name", "ingest", "--tenant", "acme", "--tenant", "beta",
                                      "--database", "docs", "--read-only", "--admin"])  # fmt: skip
    assert result.exit_code == 0, result.output
    token, blank, *rest = result.output.splitlines()
    assert token.startswith("cha_") and blank == ""
    entry = "\n".join(rest)
    assert token not in entry
    (granted,) = parse_token_file(entry)
    assert granted.digest == digest_of(token)
    assert (granted.name, granted.tenants, granted.databases) == ("ingest", {"acme", "beta"}, {"docs"})
    assert (granted.write, granted.admin) == (False, True)


def test_the_defaults_are_read_write_everywhere_and_not_admin() -> None:
    result = CliRunner().invoke(cli, ["token", "new", "--name", "app"])
    assert result.exit_code == 0, result.output
    (granted,) = parse_token_file(result.output.split("\n", 2)[2])
    assert (granted.tenants, granted.databases, granted.write, granted.admin) == ({ALL}, {ALL}, True, False)


def test_file_appends_the_entry_owner_only_and_the_gate_takes_it(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    runner = CliRunner()
    first = runner.invoke(cli, ["token", "new", "--name", "one", "--file", str(path)])
    second = runner.invoke(cli, ["token", "new", "--name", "two", "--read-only", "--file", str(path)])
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    one, two = first.stdout.strip(), second.stdout.strip()
    text = path.read_text()
    assert one not in text and two not in text
    gate = Gate(tokens_file=str(path))
    found = [gate.token([(b"authorization", b"Bearer " + t.encode())]) for t in (one, two)]
    assert [getattr(f, "name", None) for f in found] == ["one", "two"]

    again = runner.invoke(cli, ["token", "new", "--name", "one", "--file", str(path)])
    assert again.exit_code == 2 and "the name is used by an earlier token" in again.output
    assert path.read_text() == text  # unchanged


def test_a_bad_name_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["token", "new", "--name", "two words"])
    assert result.exit_code == 2 and "--name ('two words'): 'name' must be" in result.output


def test_only_loopback_addresses_count_as_closed_to_the_network() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.5", "gateway.internal", "", "192.168.1.1"):
        assert not is_loopback(host), host

"""Token files and settings: what is taken, what is refused (naming the entry), and how a presented token is found."""

from __future__ import annotations

import hashlib
import string

import pytest

from chroma_ha.gateway.tokens import (
    ALL,
    Token,
    TokenBook,
    TokenFileError,
    digest_of,
    is_token_text,
    mint,
    parse_token_file,
    parse_token_setting,
    toml_entry,
)

HASH = hashlib.sha256(b"secret-one").hexdigest()
OTHER = hashlib.sha256(b"secret-two").hexdigest()


def test_a_full_entry_and_the_defaults_of_a_minimal_one() -> None:
    text = f"""
[[token]]
name = "ingest"
sha256 = "{HASH}"
tenants = ["acme", "beta"]
databases = ["docs"]
access = "write"
admin = true

[[token]]
name = "reader"
sha256 = "{OTHER.upper()}"
"""
    ingest, reader = parse_token_file(text)
    assert ingest == Token("ingest", bytes.fromhex(HASH), frozenset({"acme", "beta"}), frozenset({"docs"}), True, True)
    assert reader == Token("reader", bytes.fromhex(OTHER), frozenset({ALL}), frozenset({ALL}), False, False)


def test_an_empty_file_has_no_tokens() -> None:
    assert parse_token_file("") == ()
    assert parse_token_file("# nothing yet\n") == ()


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ('name = "x"', "token 2 ('x'): 'sha256' must be the 64 hex digits"),
        (f'sha256 = "{OTHER}"', "token 2: 'name' must be"),
        (f'name = "x y"\nsha256 = "{OTHER}"', "token 2 ('x y'): 'name' must be"),
        (f'name = "x"\nsha256 = "{OTHER[:-1]}"', "token 2 ('x'): 'sha256'"),
        (f'name = "x"\nsha256 = "{OTHER}"\naccess = "rw"', "token 2 ('x'): 'access' must be \"read\" or \"write\""),
        (f'name = "x"\nsha256 = "{OTHER}"\nadmin = "yes"', "token 2 ('x'): 'admin' must be true or false"),
        (f'name = "x"\nsha256 = "{OTHER}"\ntenant = "acme"', "token 2 ('x'): unknown key(s) ['tenant']"),
        (f'name = "x"\nsha256 = "{OTHER}"\ntenants = []', "token 2 ('x'): 'tenants' must be a non-empty list"),
        (f'name = "x"\nsha256 = "{OTHER}"\ndatabases = "docs"', "token 2 ('x'): 'databases' must be a non-empty"),
        (f'name = "first"\nsha256 = "{OTHER}"', "token 2 ('first'): the name is used by an earlier token"),
        (f'name = "x"\nsha256 = "{HASH}"', "token 2 ('x'): the same sha256 as an earlier token"),
    ],
)
def test_a_bad_entry_is_refused_naming_it(entry: str, named: str) -> None:
    text = f'[[token]]\nname = "first"\nsha256 = "{HASH}"\n\n[[token]]\n{entry}\n'
    with pytest.raises(TokenFileError) as refused:
        parse_token_file(text)
    assert named in str(refused.value)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[[token]\nname = 1", "not valid TOML"),
        (f'[token]\nname = "x"\nsha256 = "{HASH}"', "'token' must be an array of tables"),
        (f'[[tokens]]\nname = "x"\nsha256 = "{HASH}"', "unknown top-level key(s) ['tokens']"),
    ],
)
def test_a_file_that_is_not_a_list_of_token_tables_is_refused(text: str, said: str) -> None:
    with pytest.raises(TokenFileError) as refused:
        parse_token_file(text)
    assert said in str(refused.value)


def test_a_minted_token_is_found_by_its_entry_and_no_other_string_is() -> None:
    secret = mint()
    assert len(secret) >= 40 and is_token_text(secret.encode())
    assert secret not in toml_entry("app", secret, ["*"], ["*"], write=True, admin=False)
    (token,) = parse_token_file(toml_entry("app", secret, ["acme"], ["*"], write=False, admin=True))
    assert (token.tenants, token.write, token.admin) == (frozenset({"acme"}), False, True)
    book = TokenBook([Token("other", digest_of("nope")), token])
    assert book.find(secret.encode()) is token
    assert book.find(secret[:-1].encode()) is None
    assert book.find(b"") is None


def test_names_with_quotes_and_backslashes_survive_the_entry() -> None:
    (token,) = parse_token_file(toml_entry("app", mint(), ['a"b', "c\\d"], ["*"], write=True, admin=False))
    assert token.tenants == frozenset({'a"b', "c\\d"})


def test_two_minted_tokens_differ() -> None:
    assert len({mint() for _ in range(50)}) == 50


def test_token_text_is_what_chromas_client_accepts() -> None:
    assert is_token_text((string.ascii_letters + string.digits + string.punctuation).encode())
    for bad in (b"with space", b"tab\t", "é".encode(), b"\xff\xfe", b"", b"nul\x00"):
        assert not is_token_text(bad), bad


def test_the_setting_form_is_read_write_everywhere_and_bad_entries_are_named() -> None:
    (token,) = parse_token_setting([f"ci:{HASH}"])
    assert token == Token("ci", bytes.fromhex(HASH), frozenset({ALL}), frozenset({ALL}), write=True, admin=False)
    with pytest.raises(TokenFileError, match=r"token 2: expected name:sha256"):
        parse_token_setting([f"ci:{HASH}", "nocolon"])
    with pytest.raises(TokenFileError, match=r"token 2 \('ci'\): the name is used"):
        parse_token_setting([f"ci:{HASH}", f"ci:{OTHER}"])
    with pytest.raises(TokenFileError, match=r"token 1 \('ci'\): 'sha256'"):
        parse_token_setting(["ci:plaintext-token"])


def test_a_token_given_as_a_name_is_refused_without_repeating_it() -> None:
    secret = mint()
    for refused in (
        lambda: parse_token_setting([f"{secret}:{HASH}"]),
        lambda: parse_token_file(f'[[token]]\nname = "{secret}"\nsha256 = "{HASH}"\n'),
    ):
        with pytest.raises(TokenFileError, match="looks like a token itself") as error:
            refused()
        assert secret not in str(error.value)

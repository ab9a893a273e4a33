"""Packages and layers of the `runtime` invoker: real zips and folders unpacked into the
content-addressed cache, safely, with Lambda's limits and search paths."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from connectors.runtime.package import (
    CODE_SIZE_UNZIPPED_MAX,
    PackageError,
    PreparedPackage,
    package_problems,
    prepare_package,
)

PY = f"python{sys.version_info.major}.{sys.version_info.minor}"

Entry = tuple[str, bytes, int]  # name, content (a symlink's target), unix mode


def make_zip(path: Path, entries: list[Entry]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return path


def zeros_zip(path: Path, name: str, size: int) -> Path:
    """A zip whose one member unpacks to `size` zero bytes (a few hundred KB on disk)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(name)
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        chunk = bytes(1 << 20)
        with archive.open(info, "w", force_zip64=True) as out:
            for _ in range(size // len(chunk)):
                out.write(chunk)
            out.write(bytes(size % len(chunk)))
    return path


def file(name: str, text: str = "", mode: int = 0o644) -> Entry:
    return (name, text.encode(), stat.S_IFREG | mode)


def link(name: str, target: str) -> Entry:
    return (name, target.encode(), stat.S_IFLNK | 0o777)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def problems(
    code: Path,
    layers: list[Path] | None = None,
    runtime: str = "python3.11",
    handler: str = "app.handler",
) -> list[tuple[tuple[str | int, ...], str]]:
    return package_problems(code, layers or [], runtime, handler)


# --- unpacking, merging and caching -------------------------------------------------------


def test_code_zip_and_layers_merge_in_order(tmp_path: Path) -> None:
    """The code zip becomes the task root; layers (a zip and a folder) are merged in order,
    a later layer's file replacing an earlier one's, and a file replacing a folder."""
    code = make_zip(tmp_path / "code.zip", [file("app.py", "def handler(e, c): return 1\n")])
    first = make_zip(
        tmp_path / "one.zip",
        [
            file("python/shared.py", "WHO = 'one'\n"),
            file("python/only_one.py", "X = 1\n"),
            file("data/thing/inner.txt", "a folder in layer one"),
            file("bin/tool", "#!/bin/sh\necho one\n", 0o755),
        ],
    )
    second = write(tmp_path / "two", {"python/shared.py": "WHO = 'two'\n", "data/thing": "a file"})
    prepared = prepare_package(code, [first, second], tmp_path / "cache")
    assert (prepared.task_root / "app.py").read_text().startswith("def handler")
    assert prepared.opt_root is not None
    opt = prepared.opt_root
    assert (opt / "python/shared.py").read_text() == "WHO = 'two'\n"
    assert (opt / "python/only_one.py").read_text() == "X = 1\n"
    assert (opt / "data/thing").read_text() == "a file"
    assert os.access(opt / "bin/tool", os.X_OK)
    assert prepared.task_root.is_relative_to(tmp_path / "cache")
    assert opt.is_relative_to(tmp_path / "cache")


def test_no_layers_means_no_opt_root(tmp_path: Path) -> None:
    code = write(tmp_path / "code", {"app.py": "x = 1\n"})
    prepared = prepare_package(code, [], tmp_path / "cache")
    assert prepared.opt_root is None
    assert (prepared.task_root / "app.py").read_text() == "x = 1\n"
    assert prepared.task_root != code  # a copy: the environment never writes into the source


def test_cache_is_reused_for_the_same_content(tmp_path: Path) -> None:
    """The same zip is not unpacked twice: same folder, same inode, a file added since
    still there; other content gets another folder."""
    code = make_zip(tmp_path / "code.zip", [file("app.py", "v = 1\n")])
    layer = make_zip(tmp_path / "layer.zip", [file("python/lib.py", "w = 1\n")])
    first = prepare_package(code, [layer], tmp_path / "cache")
    assert first.opt_root is not None
    (first.task_root / "sentinel").write_text("left by the test")
    (first.opt_root / "sentinel").write_text("left by the test")
    inode = first.task_root.stat().st_ino
    again = prepare_package(code, [layer], tmp_path / "cache")
    assert again == first
    assert again.task_root.stat().st_ino == inode
    assert (again.task_root / "sentinel").exists() and (again.opt_root / "sentinel").exists()  # type: ignore[operator]
    make_zip(code, [file("app.py", "v = 2\n")])
    changed = prepare_package(code, [layer], tmp_path / "cache")
    assert changed.task_root != first.task_root
    assert changed.opt_root == first.opt_root
    assert (changed.task_root / "app.py").read_text() == "v = 2\n"
    assert not [p for p in (tmp_path / "cache/code").iterdir() if p.name.startswith(".")]


def test_folder_key_follows_its_listing(tmp_path: Path) -> None:
    code = write(tmp_path / "code", {"app.py": "v = 1\n"})
    first = prepare_package(code, [], tmp_path / "cache")
    assert prepare_package(code, [], tmp_path / "cache") == first
    (code / "app.py").write_text("v = 22\n")  # another size
    second = prepare_package(code, [], tmp_path / "cache")
    assert second.task_root != first.task_root
    assert (second.task_root / "app.py").read_text() == "v = 22\n"


def test_modes_keep_exec_and_drop_setuid_and_world_write(tmp_path: Path) -> None:
    code = make_zip(
        tmp_path / "code.zip",
        [
            file("bootstrap", "#!/bin/sh\n", 0o4777),
            file("plain.txt", "x", 0o666),
        ],
    )
    root = prepare_package(code, [], tmp_path / "cache").task_root
    assert stat.S_IMODE((root / "bootstrap").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "plain.txt").stat().st_mode) == 0o644


def test_symlinks_inside_are_kept(tmp_path: Path) -> None:
    code = make_zip(
        tmp_path / "code.zip",
        [
            file("lib/real.py", "R = 1\n"),
            link("alias.py", "lib/real.py"),
            link("lib/up.py", "../alias.py"),
        ],
    )
    root = prepare_package(code, [], tmp_path / "cache").task_root
    assert (root / "alias.py").is_symlink()
    assert (root / "lib/up.py").read_text() == "R = 1\n"
    folder = write(tmp_path / "folder", {"lib/real.py": "F = 1\n"})
    (folder / "alias.py").symlink_to(folder / "lib/real.py")  # absolute, but inside
    copied = prepare_package(folder, [], tmp_path / "cache").task_root
    assert (copied / "alias.py").is_symlink()
    assert not os.readlink(copied / "alias.py").startswith("/")
    assert (copied / "alias.py").read_text() == "F = 1\n"


# --- what is refused -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([file("../evil.py", "x")], "leads outside the package (`..`)"),
        ([file("a/../../evil.py", "x")], "leads outside the package (`..`)"),
        ([file("/tmp/evil.py", "x")], "has an absolute path"),
        ([link("passwd", "../../../etc/passwd")], "symlink 'passwd' leads outside the package"),
        ([link("passwd", "/etc/passwd")], "points to the absolute path '/etc/passwd'"),
        ([("dev", b"", stat.S_IFCHR | 0o644)], "is a device file, FIFO or socket"),
        ([("fifo", b"", stat.S_IFIFO | 0o644)], "is a device file, FIFO or socket"),
    ],
)
def test_unsafe_zip_members_are_refused(tmp_path: Path, entries: list[Entry], message: str) -> None:
    code = make_zip(tmp_path / "code.zip", [file("app.py", "x = 1\n"), *entries])
    found = problems(code)
    assert len(found) == 1 and found[0][0] == ("code",) and message in found[0][1], found
    with pytest.raises(
        PackageError, match=message.replace("(", r"\(").replace(")", r"\)")
    ) as caught:
        prepare_package(code, [], tmp_path / "cache")
    assert caught.value.path == ("code",)
    assert not (tmp_path / "evil.py").exists() and not Path("/tmp/evil.py").exists()
    assert not list((tmp_path / "cache").glob("code/*"))


def test_symlink_chain_escape_is_refused_when_unpacking(tmp_path: Path) -> None:
    """`d -> .` then `d/x -> ../outside`: each looks inside on its own, together they lead out."""
    layer = make_zip(tmp_path / "layer.zip", [link("d", "."), link("d/x", "../outside")])
    code = make_zip(tmp_path / "code.zip", [file("app.py")])
    with pytest.raises(PackageError, match="leads outside the package") as caught:
        prepare_package(code, [layer], tmp_path / "cache")
    assert caught.value.path == ("layers", 0)
    assert not list((tmp_path / "cache/opt").iterdir())  # the scratch folder is gone


def test_write_through_a_symlink_is_refused(tmp_path: Path) -> None:
    """A member under a symlinked folder that leads out is never written."""
    outside = tmp_path / "outside"
    outside.mkdir()
    layer = make_zip(tmp_path / "layer.zip", [link("d", "."), file("d/../../x", "no")])
    assert problems(make_zip(tmp_path / "c.zip", [file("app.py")]), [layer])[0][0] == ("layers", 0)
    layer = make_zip(
        tmp_path / "layer2.zip", [link("up", "d/.."), link("d", "."), file("up/f", "x")]
    )
    with pytest.raises(PackageError):
        prepare_package(make_zip(tmp_path / "c.zip", [file("app.py")]), [layer], tmp_path / "cache")
    assert not (tmp_path / "cache/f").exists() and not (tmp_path / "f").exists()


def test_folder_symlink_leading_outside_is_refused(tmp_path: Path) -> None:
    secret = write(tmp_path / "secret", {"key": "s3cr3t"})
    code = write(tmp_path / "code", {"app.py": "x = 1\n"})
    (code / "key").symlink_to(secret / "key")
    assert problems(code) == [(("code",), "symlink 'key' leads outside the folder")]
    with pytest.raises(PackageError, match="leads outside the folder"):
        prepare_package(code, [], tmp_path / "cache")


def test_folder_fifo_is_refused(tmp_path: Path) -> None:
    code = write(tmp_path / "code", {"app.py": "x = 1\n"})
    os.mkfifo(code / "pipe")
    assert problems(code) == [(("code",), "'pipe' is a device file, FIFO or socket")]


def test_code_and_layers_over_250_mb_are_refused(tmp_path: Path) -> None:
    """A zip bomb: a few hundred KB that unpack to more than Lambda's 250 MB for the code
    and its layers together; refused before anything is written."""
    code = zeros_zip(tmp_path / "code.zip", "app.py", 150 * 1_048_576)
    layer = zeros_zip(tmp_path / "layer.zip", "python/blob", 120 * 1_048_576)
    assert code.stat().st_size < 1_048_576 and layer.stat().st_size < 1_048_576
    assert problems(code) == []
    assert problems(code, [layer]) == [
        (("layers",), "unpacked, the code and its layers take 270.0 MB; Lambda allows 250 MB")
    ]
    with pytest.raises(PackageError, match="Lambda allows 250 MB"):
        prepare_package(code, [layer], tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    assert CODE_SIZE_UNZIPPED_MAX == 250 * 1_048_576


# --- offline problems ----------------------------------------------------------------------


def test_missing_code_not_a_zip_and_missing_layer(tmp_path: Path) -> None:
    text = tmp_path / "code.zip"
    text.write_text("not a zip")
    layer = tmp_path / "nope.zip"
    assert problems(text, [layer]) == [
        (("code",), f"{str(text)!r} is not a zip file (nor a folder)"),
        (("layers", 0), f"{str(layer)!r} does not exist"),
    ]
    assert problems(tmp_path / "missing") == [
        (("code",), f"{str(tmp_path / 'missing')!r} does not exist")
    ]
    with pytest.raises(PackageError, match="does not exist") as caught:
        prepare_package(make_zip(tmp_path / "c.zip", [file("app.py")]), [layer], tmp_path / "c")
    assert caught.value.path == ("layers", 0)


def test_at_most_five_layers(tmp_path: Path) -> None:
    code = write(tmp_path / "code", {"app.py": ""})
    layers = [write(tmp_path / f"l{i}", {f"f{i}": ""}) for i in range(6)]
    assert problems(code, layers) == [(("layers",), "has 6 layers; Lambda allows at most 5")]
    assert problems(code, layers[:5]) == []
    with pytest.raises(PackageError, match="at most 5"):
        prepare_package(code, layers, tmp_path / "cache")


@pytest.mark.parametrize(
    ("files", "handler", "found"),
    [
        ({"app.py": ""}, "app.handler", True),
        ({"app.py/readme": ""}, "app.handler", False),
        ({"app/__init__.py": ""}, "app.handler", True),
        ({"pkg/sub/mod.py": ""}, "pkg.sub.mod.handler", True),
        ({"pkg/sub/mod.py": ""}, "pkg/sub/mod.handler", True),
        ({"fast.cpython-311-x86_64-linux-gnu.so": ""}, "fast.handler", True),
        ({"other.py": ""}, "app.handler", False),
        ({"pkg/app.py": ""}, "app.handler", False),
    ],
)
def test_python_handler_file(
    tmp_path: Path, files: dict[str, str], handler: str, found: bool
) -> None:
    for code in (
        write(tmp_path / "folder", files),
        make_zip(tmp_path / "code.zip", [file(n) for n in files]),
    ):
        result = problems(code, handler=handler)
        if found:
            assert result == []
        else:
            assert result == [
                (
                    ("handler",),
                    f"no module for {handler!r}: neither app.py nor "
                    "app/__init__.py is in the code or a layer's python folder",
                )
            ]


def test_python_handler_found_in_a_layer(tmp_path: Path) -> None:
    code = write(tmp_path / "code", {"readme.txt": ""})
    in_python = make_zip(tmp_path / "a.zip", [file("python/app.py")])
    in_site = make_zip(tmp_path / "b.zip", [file(f"python/lib/{PY}/site-packages/app/__init__.py")])
    assert problems(code, [in_python]) == []
    assert problems(code, [in_site], runtime=PY) == []
    assert problems(code, [in_site], runtime="python3.99") != []


@pytest.mark.parametrize(
    ("name", "handler", "found"),
    [
        ("index.js", "index.handler", True),
        ("index.mjs", "index.handler", True),
        ("index.cjs", "index.handler", True),
        ("src/app.js", "src/app.handler", True),
        ("index.js", "index.nested.fn", True),
        ("main.js", "index.handler", False),
    ],
)
def test_node_handler_file(tmp_path: Path, name: str, handler: str, found: bool) -> None:
    code = make_zip(tmp_path / "code.zip", [file(name)])
    result = problems(code, runtime="nodejs20.x", handler=handler)
    if found:
        assert result == []
    else:
        assert result == [
            (
                ("handler",),
                "no module for 'index.handler': none of index.js, "
                "index.mjs, index.cjs is in the code",
            )
        ]


def test_handler_without_a_function(tmp_path: Path) -> None:
    code = write(tmp_path / "code", {"app.py": ""})
    assert problems(code, handler="app") == [(("handler",), "'app' is not `module.function`")]
    assert problems(code, runtime="nodejs20.x", handler="index") == [
        (("handler",), "'index' is not `module.function`")
    ]


def test_provided_runtime_bootstrap(tmp_path: Path) -> None:
    def check(
        code: Path, layers: list[Path] | None = None
    ) -> list[tuple[tuple[str | int, ...], str]]:
        return problems(code, layers, runtime="provided.al2023", handler="unused")

    executable = make_zip(tmp_path / "ok.zip", [file("bootstrap", "#!/bin/sh\n", 0o755)])
    plain = make_zip(tmp_path / "plain.zip", [file("bootstrap", "#!/bin/sh\n", 0o644)])
    empty = make_zip(tmp_path / "empty.zip", [file("readme.txt")])
    assert check(executable) == []
    assert check(plain) == [
        (("code",), "`bootstrap` is not executable (chmod +x it before zipping)")
    ]
    assert check(empty) == [
        (("code",), "a provided runtime needs an executable `bootstrap` in the code or a layer")
    ]
    assert check(empty, [executable]) == []  # a custom runtime from a layer
    folder = write(tmp_path / "folder", {"bootstrap": "#!/bin/sh\n"})
    assert check(folder) != []
    (folder / "bootstrap").chmod(0o755)
    assert check(folder) == []


# --- search paths --------------------------------------------------------------------------


def test_search_paths_per_runtime(tmp_path: Path) -> None:
    task, opt = tmp_path / "task", tmp_path / "opt"
    both = PreparedPackage(task, opt)
    assert both.search_paths("python3.12") == {
        "PYTHONPATH": f"{task}:{opt}/python/lib/python3.12/site-packages:{opt}/python",
        "LD_LIBRARY_PATH": f"{task}:{task}/lib:{opt}/lib",
        "PATH": f"{opt}/bin",
    }
    assert both.search_paths("nodejs22.x") == {
        "NODE_PATH": f"{opt}/nodejs/node22/node_modules:{opt}/nodejs/node_modules:{task}",
        "LD_LIBRARY_PATH": f"{task}:{task}/lib:{opt}/lib",
        "PATH": f"{opt}/bin",
    }
    assert both.search_paths("provided.al2023") == {
        "LD_LIBRARY_PATH": f"{task}:{task}/lib:{opt}/lib",
        "PATH": f"{opt}/bin",
    }
    alone = PreparedPackage(task, None)
    assert alone.search_paths("python3.11") == {
        "PYTHONPATH": str(task),
        "LD_LIBRARY_PATH": f"{task}:{task}/lib",
    }
    assert alone.search_paths("nodejs20.x")["NODE_PATH"] == str(task)
    assert both.merged_into(
        "python3.12", {"PATH": "/usr/bin:/bin", "PYTHONPATH": "/elsewhere"}
    ) == {
        "PATH": f"/usr/bin:/bin:{opt}/bin",
        "PYTHONPATH": f"{task}:{opt}/python/lib/python3.12/site-packages:{opt}/python",
        "LD_LIBRARY_PATH": f"{task}:{task}/lib:{opt}/lib",
    }


def test_a_python_process_imports_as_on_lambda(tmp_path: Path) -> None:
    """A real interpreter with the search paths: the code shadows the layers, a layer's
    site-packages comes before its python folder, a layer's bin is on PATH."""
    code = make_zip(
        tmp_path / "code.zip",
        [file("app.py", "WHERE = 'task'\n"), file("shadow.py", "WHERE = 'task'\n")],
    )
    layer = make_zip(
        tmp_path / "layer.zip",
        [
            file("python/shadow.py", "WHERE = 'layer'\n"),
            file("python/both.py", "WHERE = 'python'\n"),
            file(f"python/lib/{PY}/site-packages/both.py", "WHERE = 'site-packages'\n"),
            file("python/only.py", "WHERE = 'layer'\n"),
            file("bin/layer-tool", "#!/bin/sh\necho from-layer-bin\n", 0o755),
        ],
    )
    prepared = prepare_package(code, [layer], tmp_path / "cache")
    environment = prepared.merged_into(PY, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    script = (
        "import app, shadow, both, only, subprocess;"
        "print(app.WHERE, shadow.WHERE, both.WHERE, only.WHERE);"
        "print(subprocess.run(['layer-tool'], capture_output=True, text=True).stdout.strip())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        cwd=prepared.task_root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["task task site-packages layer", "from-layer-bin"]


def test_a_zip_lying_about_its_sizes_is_refused(tmp_path: Path) -> None:
    """A member whose central directory declares 10 bytes but holds a megabyte: no more
    than the declared bytes are read, and the checksum then refuses it."""
    code = make_zip(tmp_path / "code.zip", [("app.py", bytes(1_048_576), stat.S_IFREG | 0o644)])
    data = bytearray(code.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")  # uncompressed size
    local = data.index(b"PK\x03\x04")
    data[local + 22 : local + 26] = (10).to_bytes(4, "little")
    code.write_bytes(bytes(data))
    assert problems(code) == []  # what it declares is fine
    with pytest.raises(PackageError, match="cannot be unpacked: Bad CRC-32") as caught:
        prepare_package(code, [], tmp_path / "cache")
    assert caught.value.path == ("code",)
    assert not [p for p in (tmp_path / "cache/code").iterdir()]


def test_concurrent_prepares_agree_on_one_folder(tmp_path: Path) -> None:
    """Callers run prepare_package in threads: racing ones end with the same folder and no
    scratch folder left behind."""
    from concurrent.futures import ThreadPoolExecutor

    code = make_zip(tmp_path / "code.zip", [file(f"m{i}.py", "x = 1\n" * 1000) for i in range(200)])
    layer = write(tmp_path / "layer", {"python/lib.py": "y = 1\n"})
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: prepare_package(code, [layer], tmp_path / "cache"), range(8))
        )
    assert len(set(results)) == 1
    assert len(list((tmp_path / "cache/code").iterdir())) == 1
    assert len(list((tmp_path / "cache/opt").iterdir())) == 1
    assert (results[0].task_root / "m199.py").exists()

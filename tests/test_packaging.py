"""The built wheel, as a user installs it: its top-level modules, and its console scripts run outside the checkout."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from train_helpers import REPO_ROOT, tiny_run_flags, write_tiny_corpus

PACKAGES = {"modeling_seq2seq", "data_scripts", "luong_chatbot"}
CONSOLE_SCRIPTS = ["luong-train", "luong-chat", "luong-evaluate", "luong-build-dataset", "luong-export", "luong-web"]
# What a source checkout holds that a build must not see: environments, outputs and caches.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "runs", "data", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"
)


def run(args: list[str], cwd: Path, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def build_wheel(source: Path, dist: Path) -> Path:
    """`python -m build --wheel` without build isolation: offline, with this environment's setuptools."""
    run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(source)],
        source,
        {**os.environ},
    )
    (wheel,) = dist.glob("*.whl")
    return wheel


def top_level_names(wheel: Path) -> set[str]:
    """The first path component of every file the wheel installs into site-packages."""
    with zipfile.ZipFile(wheel) as archive:
        names = {name.split("/")[0] for name in archive.namelist()}
    return {name.removesuffix(".py") for name in names if not name.endswith((".dist-info", ".data"))}


def make_venv(venv: Path) -> Path:
    """A fresh virtualenv that sees this environment's packages (torch...) through a .pth line, not by copying them.

    A path a .pth line adds is not itself scanned for .pth files, so this environment's editable install of the
    project (a .pth-loaded finder) stays invisible: only the wheel installed below provides the project.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    outer = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site_packages / "outer_environment.pth").write_text("\n".join(outer) + "\n")
    return python


@pytest.mark.slow
def test_wheel_installs_only_the_packages_and_its_console_scripts_work(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCES)
    wheel = build_wheel(source, tmp_path / "dist")
    assert top_level_names(wheel) == PACKAGES  # no train, chat or evaluation module beside them
    with zipfile.ZipFile(wheel) as archive:
        assert any(name.endswith(".data/data/share/luong-chatbot/model_card.md") for name in archive.namelist())

    python = make_venv(tmp_path / "venv")
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        tmp_path,
        {**os.environ},
    )
    bin_dir = python.parent
    work = tmp_path / "outside"  # no checkout here, and no PYTHONPATH: only the installed wheel provides the code
    work.mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    # Where the packages resolve from, without importing them (each import of the app costs seconds of torch).
    spec_script = "import importlib.util as u; print(u.find_spec('luong_chatbot').origin, u.find_spec('train'))"
    located, train_module = run([str(python), "-c", spec_script], work, env).stdout.split()
    assert Path(located).is_relative_to(tmp_path / "venv") and train_module == "None"
    # The `--help` runs at once: each spends its time importing torch and transformers.
    helps = [
        subprocess.Popen([bin_dir / script, "--help"], cwd=work, env=env, stdout=subprocess.PIPE, text=True)
        for script in CONSOLE_SCRIPTS
    ]
    for script, process in zip(CONSOLE_SCRIPTS, helps, strict=True):
        stdout, _ = process.communicate(timeout=180)
        assert process.returncode == 0 and "usage:" in stdout.lower(), script

    corpus = write_tiny_corpus(work / "corpus")
    flags = tiny_run_flags(None, work / "model", max_steps=2)  # from the corpus: train builds the dataset first
    run([str(bin_dir / "luong-train"), "--corpus-dir", str(corpus), *flags], work, env)
    assert (work / "model" / "README.md").is_file()  # the model card, rendered from the installed template
    chat = run([str(bin_dir / "luong-chat"), str(work / "model")], work, env, stdin="where am I?\nq\n")
    assert "Bot:" in chat.stdout

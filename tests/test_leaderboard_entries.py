"""CI's check of the committed leaderboard: every entry valid, the rendered tables up to date."""

from pathlib import Path

from recguard.leaderboard.board import entry_files, load_boards
from recguard.leaderboard.entry import read_entry
from recguard.leaderboard.render import MARK_END, MARK_START, markdown, rendered_files
from recguard.plugins import get_host

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "leaderboards"
STALE = "is stale: run `recguard leaderboard render --readme README.md` and commit the result"


def test_every_committed_entry_is_valid():
    for path in entry_files([FOLDER]):
        read_entry(path, get_host())   # raises with the file and its first problem


def test_the_rendered_leaderboard_is_up_to_date():
    boards = load_boards(FOLDER, get_host())
    for name, text in rendered_files(boards, "../").items():
        assert (FOLDER / name).read_text() == text, f"leaderboards/{name} {STALE}"
    readme = (ROOT / "README.md").read_text()
    section = readme.split(MARK_START, 1)[1].split(MARK_END, 1)[0]
    assert section == f"\n{markdown(boards, '')}\n", f"the README's leaderboard {STALE}"

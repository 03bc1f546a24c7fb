"""README.md and docs/*.md point at things that exist: relative links and images resolve to files
or directories, #anchors match a heading of the target page (GitHub's slugs), every docs page is
linked from the README, backticked repository paths (`scripts/demo.sh`, `configs/...yaml`, ...)
exist, and the README's headline tables are copies of tables in docs/. Needs no build."""
import collections
import os
import pathlib
import re
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

# Backticked tokens starting with one of these are checked as repository paths.
PATH_PREFIXES = ("src/", "apps/", "configs/", "scripts/", "bench/", "tests/", "docs/",
                 "examples/", "cmake/")
# Tokens with any of these are patterns or placeholders, not paths.
PLACEHOLDERS = ("*", "<", ">", "{", "}", "$", "SPLIT", "...", "[", "]", "|", "NNN")

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def pages():
    return [README] + sorted(DOCS.glob("*.md"))


def rel(path):
    return path.relative_to(ROOT).as_posix()


def blank(text):
    """The text with its characters replaced by spaces, newlines kept (offsets stay valid)."""
    return re.sub(r"[^\n]", " ", text)


def prose(text):
    """The page with fenced and indented code blocks blanked, line for line."""
    out = []
    in_fence = False
    in_indented = False
    previous_blank = True
    for line in text.split("\n"):
        if FENCE.match(line):
            in_fence = not in_fence
            out.append("")
            previous_blank = False
            continue
        if in_fence:
            out.append("")
            continue
        is_blank = not line.strip()
        if line.startswith("    ") and not is_blank and (previous_blank or in_indented):
            in_indented = True
            out.append("")
        else:
            if not is_blank:
                in_indented = False
            out.append(line)
        previous_blank = is_blank
    return "\n".join(out)


def code_spans(text):
    """(line number, content) of every inline code span; spans stay within a paragraph."""
    text = prose(text)
    spans = []
    offset = 0
    for paragraph in re.split(r"(\n[ \t]*\n)", text):
        for m in CODE_SPAN.finditer(paragraph):
            line = text.count("\n", 0, offset + m.start()) + 1
            spans.append((line, m.group(2)))
        offset += len(paragraph)
    return spans


def without_code(text):
    """The page with code blocks and inline code blanked, so links are only taken from prose."""
    text = prose(text)
    out = []
    for paragraph in re.split(r"(\n[ \t]*\n)", text):
        out.append(CODE_SPAN.sub(lambda m: blank(m.group(0)), paragraph))
    return "".join(out)


def links(text):
    """(line number, target) of every inline link, image and reference definition."""
    text = without_code(text)
    found = []
    for m in LINK.finditer(text):
        found.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    for number, line in enumerate(text.split("\n"), 1):
        m = REFERENCE.match(line)
        if m:
            found.append((number, m.group(1)))
    return found


def is_external(target):
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) is not None  # http:, https:, mailto:


def slug(heading):
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation other than '-' and
    '_' removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text)                       # inline HTML
    text = text.replace("`", "").replace("*", "")
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    """The anchors of a page's headings, duplicates numbered -1, -2, ... as GitHub does."""
    seen = collections.Counter()
    result = set()
    for line in prose(path.read_text(encoding="utf-8")).split("\n"):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        name = base if seen[base] == 0 else f"{base}-{seen[base]}"
        seen[base] += 1
        result.add(name)
    return result


def tables(text):
    """Each Markdown table of the page (outside code blocks) as a tuple of its lines."""
    found = []
    current = []
    for line in prose(text).split("\n") + [""]:
        if line.startswith("|"):
            current.append(line.rstrip())
        elif current:
            found.append(tuple(current))
            current = []
    return found


class DocsLinksTest(unittest.TestCase):
    def test_pages_exist(self):
        self.assertTrue(README.is_file())
        self.assertTrue(list(DOCS.glob("*.md")), "docs/ has no pages")

    def test_relative_links_resolve(self):
        broken = []
        for page in pages():
            for line, target in links(page.read_text(encoding="utf-8")):
                if is_external(target):
                    continue
                path_part, _, anchor = target.partition("#")
                where = f"{rel(page)}:{line}: ({target})"
                if path_part:
                    resolved = pathlib.Path(os.path.normpath(page.parent / path_part))
                    if not resolved.exists():
                        broken.append(f"{where}: no such file or directory")
                        continue
                    if ROOT not in resolved.parents and resolved != ROOT:
                        broken.append(f"{where}: outside the repository")
                        continue
                else:
                    resolved = page
                if anchor:
                    if resolved.suffix != ".md" or not resolved.is_file():
                        broken.append(f"{where}: an anchor into a file that is not a page")
                    elif anchor not in anchors(resolved):
                        broken.append(f"{where}: no heading '#{anchor}' in {rel(resolved)}")
        if broken:
            self.fail("broken links:\n" + "\n".join(broken))

    def test_every_docs_page_is_linked_from_the_readme(self):
        linked = set()
        for _, target in links(README.read_text(encoding="utf-8")):
            if is_external(target):
                continue
            path_part = target.partition("#")[0]
            if path_part:
                linked.add(pathlib.Path(os.path.normpath(README.parent / path_part)))
        missing = [rel(page) for page in sorted(DOCS.glob("*.md")) if page not in linked]
        if missing:
            self.fail("docs pages not linked from README.md:\n" + "\n".join(missing))

    def test_backticked_repository_paths_exist(self):
        broken = []
        for page in pages():
            for line, span in code_spans(page.read_text(encoding="utf-8")):
                for token in span.replace("/\n", "/").split():  # a path wrapped after a '/'
                    token = token.strip(".,;:()'\"")
                    if not token.startswith(PATH_PREFIXES):
                        continue
                    if any(p in token for p in PLACEHOLDERS):
                        continue
                    if not (ROOT / token).exists():
                        broken.append(f"{rel(page)}:{line}: `{token}` does not exist")
        if broken:
            self.fail("missing repository paths:\n" + "\n".join(broken))

    def test_readme_tables_are_copies_of_docs_tables(self):
        # The README's headline tables repeat measurements documented in docs/: a table changed in
        # one place only would make the two disagree.
        docs_tables = set()
        for page in sorted(DOCS.glob("*.md")):
            docs_tables.update(tables(page.read_text(encoding="utf-8")))
        differing = [table[0] for table in tables(README.read_text(encoding="utf-8"))
                     if table not in docs_tables]
        if differing:
            self.fail("README tables that are not copies of a docs/ table (header shown):\n" +
                      "\n".join(differing))

    def test_slug(self):
        self.assertEqual(slug("`make demo`: train, evaluate and run a detector"),
                         "make-demo-train-evaluate-and-run-a-detector")
        self.assertEqual(slug("Set-up: two commands (Debian 12)"), "set-up-two-commands-debian-12")
        self.assertEqual(slug("Operators: `torch.ops.setdet` (`build/lib/libsetdet_ops.so`)"),
                         "operators-torchopssetdet-buildliblibsetdet_opsso")
        self.assertEqual(slug("NMS-free FCOS_PSS / ATSS_PSS (`make demo-pss`)"),
                         "nms-free-fcos_pss--atss_pss-make-demo-pss")


if __name__ == "__main__":
    unittest.main()

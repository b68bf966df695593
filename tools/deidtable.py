"""Read src/govern/deid-table.txt, DICOM PS3.15 Table E.1-1 as text.

The one reader of the file's layout, shared by tools/deidgen.py (which
makes src/govern/deid-table.c of it) and the tests that check covct deid
against the table (tests/govern_deid_check.py, tests/govern_deid_table.py);
each gives the entries its own meaning.
"""


def entries(path):
    """Yield (section, fields, line) for each entry of the table: '#'
    starts a comment, a line '[name]' starts section name (None before
    the first), fields are the entry's whitespace-separated words."""
    section = None
    with open(path, encoding="ascii") as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            yield section, line.split(), line

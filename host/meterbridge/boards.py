"""Board files (boards/<name>.json): loading, pin checks, and the wiring picture drawn from them."""

import json
from xml.sax.saxutils import escape

from . import paths
from .errors import CommandError

BOARDS = paths.REPO / "boards"
_KEYS = ("name", "title", "chip", "mpy_arch", "flash", "uart", "labels", "transceiver", "ethernet", "button",
         "reserved", "notes")  # and optional: rx_pull_up, a resistor the RX line needs (drawn in the picture)
# ESP32 datasheet (v4.x), "Strapping Pins": sampled at reset to choose boot mode, flash voltage and timing
STRAPPING = {0: "boot mode", 2: "boot mode", 5: "SDIO timing", 12: "flash voltage, MTDI", 15: "boot log, MTDO"}


def names():
    """Every board with a file in boards/."""
    return sorted(p.stem for p in BOARDS.glob("*.json"))


def load(name):
    """The board file as a dict; a CommandError names an unknown board or a missing key."""
    path = BOARDS / f"{name}.json"
    if not path.exists():
        raise CommandError(f"unknown board {name!r}; known: {', '.join(names())}")
    board = json.loads(path.read_text())
    missing = [k for k in _KEYS if k not in board]
    if missing:
        raise CommandError(f"{path}: missing {', '.join(missing)}")
    return board


def pin_problems(board, uart, where):
    """Reasons why a meter's uart pins cannot work on this board, each naming the field (the chip's own limits,
    such as input-only pins, are the firmware's config check)."""
    problems = []
    for key in ("tx", "rx", "de"):
        pin = uart.get(key)
        why = board["reserved"].get(str(pin)) if pin is not None else None
        if why:
            problems.append(f"{where}.{key}: GPIO{pin} is taken on {board['name']} ({why})")
    return problems


def strapping_uses(board):
    """The board's uart pins that are ESP32 strapping pins, as 'rx=GPIO5 (SDIO timing)'."""
    uart = board["uart"]
    return [f"{key}=GPIO{uart[key]} ({STRAPPING[uart[key]]})" for key in ("tx", "rx", "de")
            if uart.get(key) in STRAPPING]


def download_url(board):
    """Where micropython.org offers the firmware image for this board."""
    return f"https://micropython.org/download/{board['flash']['micropython']}/"


def _text(x, y, s, size=13, anchor="start", weight="normal"):
    return (f'<text x="{x}" y="{y}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}">'
            f"{escape(str(s))}</text>")


def _box(x, y, w, h, fill):
    return f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{fill}" stroke="#333"/>'


def _wire(x1, y, x2, color):
    return f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{color}" stroke-width="2"/>'


def _network(board):
    eth = board["ethernet"]
    if eth:
        return f"Ethernet {eth['phy_type']} (PHY address {eth['phy_addr']}), Wi-Fi as an alternative"
    return "Wi-Fi"


def _pull_up():
    """R1 from the RX wire (y 130) to the 3.3 V wire (y 190); it crosses DE without a junction."""
    x = 345
    return [f'<line x1="{x}" y1="130" x2="{x}" y2="190" stroke="#333" stroke-width="2"/>',
            f'<circle cx="{x}" cy="130" r="3.5" fill="#333"/>', f'<circle cx="{x}" cy="190" r="3.5" fill="#333"/>',
            f'<rect x="{x - 6}" y="136" width="12" height="20" fill="#ffffff" stroke="#333" stroke-width="2"/>',
            _text(x - 10, 150, "R1 10k", 11, anchor="end")]


def wiring_svg(board):
    """A wiring picture: board pins to the RS-485 transceiver to the meter's A/B terminals."""
    uart, labels = board["uart"], board["labels"]
    rows = [  # board pin, its role, transceiver pin, wire colour
        (labels["tx"], "TX", "DI", "#c0392b"),
        (labels["rx"], "RX", "RO", "#2471a3"),
        (labels["de"], "DE", "DE + /RE", "#7d3c98") if uart["de"] is not None
        else ("(auto-direction module)", "", "", "#ffffff"),
        (labels["3v3"], "3.3 V", "VCC", "#d35400"),
        (labels["gnd"], "GND", "GND", "#000000"),
    ]
    button = board["button"]
    footer = [
        f"Transceiver: {board['transceiver']}; 120 ohm termination at both ends of the bus.",
        "Vendors disagree on A/B naming: if the meter never answers, swap the two bus wires.",
        f"Network: {_network(board)}.",
        f"Safe mode: hold {button['label']} (GPIO{button['pin']}) as the board starts, or create /safemode."
        if button else "Safe mode: create the file /safemode on the board (no button).",
        f"Flash: {board['chip']} at {board['flash']['offset']}, image {board['flash']['micropython']}.",
    ]
    if board.get("rx_pull_up"):
        footer.insert(0, board["rx_pull_up"] + ".")
    height = 280 + 20 * len(footer)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height}" viewBox="0 0 760 {height}" '
           'font-family="sans-serif">',
           f'<rect width="760" height="{height}" fill="#ffffff"/>',
           _text(20, 28, f"{board['title']}: RS-485 wiring (UART{uart['id']})", 16, weight="bold"),
           _box(20, 50, 250, 200, "#e8f1fb"), _text(145, 72, board["title"], anchor="middle", weight="bold"),
           _box(380, 50, 170, 200, "#fdf2e9"),
           _text(465, 72, "RS-485 transceiver", anchor="middle", weight="bold"),
           _box(640, 90, 100, 120, "#eafaf1"), _text(690, 112, "Meter", anchor="middle", weight="bold")]
    for i, (pin, role, peer, color) in enumerate(rows):
        y = 100 + i * 30
        out += [_wire(270, y, 380, color), _text(30, y + 4, pin), _text(390, y + 4, peer)]
        if role and role != pin:
            out.append(_text(262, y + 4, role, 11, anchor="end"))
    for i, (term, color) in enumerate((("A (+)", "#16a085"), ("B (-)", "#7f8c8d"))):
        y = 130 + i * 40
        out += [_wire(550, y, 640, color), _text(540, y + 4, term[0], anchor="end"), _text(650, y + 4, term)]
    if board.get("rx_pull_up"):
        out += _pull_up()
    out += [_text(20, 280 + i * 20, line, 12) for i, line in enumerate(footer)]
    out.append("</svg>")
    return "\n".join(out) + "\n"

"""The board files' ESP32 facts: input-only RX pins get a pull-up, WROVER PSRAM pins, strapping pins."""

from meterbridge import boards
from meterbridge.main import main

INPUT_ONLY = range(34, 40)  # ESP32 GPIO34-39: input only, no internal pull resistors (ESP32 TRM, IO_MUX)


def test_an_rx_on_an_input_only_pin_gets_a_pull_up_in_notes_and_picture():
    """RO floats while DE is high (the transceiver's receiver is off) and GPIO34-39 have no pull-up."""
    floating = [name for name in boards.names() if boards.load(name)["uart"]["rx"] in INPUT_ONLY]
    assert "olimex-esp32-poe" in floating
    for name in floating:
        board = boards.load(name)
        assert "RO" in board["rx_pull_up"] and "3.3 V" in board["rx_pull_up"]
        assert any("pull-up" in note and "module that has one" in note for note in board["notes"])
        svg = boards.wiring_svg(board)
        assert "R1 10k" in svg and board["rx_pull_up"] in svg


def test_a_wrover_devkitc_keeps_the_bus_off_its_psram_pins():
    wrover = boards.load("esp32-devkitc-wrover-max3485")
    assert {"16", "17"} <= set(wrover["reserved"])
    assert boards.pin_problems(wrover, {"tx": 17, "rx": 16, "de": 4}, "uart") == [
        "uart.tx: GPIO17 is taken on esp32-devkitc-wrover-max3485 (PSRAM (WROVER module))",
        "uart.rx: GPIO16 is taken on esp32-devkitc-wrover-max3485 (PSRAM (WROVER module))"]
    assert any("WROVER" in note for note in boards.load("esp32-devkitc-max3485")["notes"])


def test_config_boards_lists_the_strapping_pins_and_a_uart_on_one(capsys):
    assert main(["config", "boards"]) == 0
    out = capsys.readouterr().out
    assert "strapping pins" in out and all(f"{pin} (" in out for pin in (0, 2, 5, 12, 15))
    assert "on a strapping pin: rx=GPIO5 (SDIO timing)" in out  # WT32-ETH01's RX
    for name in boards.names():
        assert any("Strapping pins (0, 2, 5, 12, 15)" in note for note in boards.load(name)["notes"])

"""Stands in for the package meterbridge.hal, whose __init__ picks the HAL by sys.platform: bench/wasm/board.py
names this module meterbridge.hal and points its __path__ at the real one, so that hal/esp32.py loads as on a board."""

"""Entry point on the board and under the unix port: `micropython main.py config.json`."""

from meterbridge.start import main

main()

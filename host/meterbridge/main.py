"""The `meterbridge` command: a table of subcommands, one handler module each (mpremote's shape).

A handler module is imported only when its command runs, so a slow or optional dependency of one
command never costs the others.
"""

import argparse
import importlib
import sys

from .errors import CommandError

# name -> (module under meterbridge.commands, one-line help)
_COMMANDS = {
    "demo": ("demo", "the bridge under the unix port against a simulated meter and a local mosquitto"),
    "run": ("run", "run the firmware under the MicroPython unix port"),
    "sim": ("sim", "simulate Modbus RTU meters on a pty or serial port"),
    "scan": ("scan", "find the meters on an RS-485 bus: line settings, slave ids, profiles, read limits"),
    "monitor": ("monitor", "watch and drive the EVerest powermeter API like EVerest does"),
    "status": ("status", "every board on a broker, from its state topic, as a live table"),
    "logs": ("logs", "follow one board's warn and error lines"),
    "verify-ocmf": ("verify_ocmf", "check an OCMF record against the meter's public key and show its readings"),
    "flash": ("flash", "erase a board and write the MicroPython image for it (esptool)"),
    "deploy": ("deploy", "compile the firmware and copy what changed, the config and profiles to a board"),
    "config": ("config", "create, validate or show a config.json; list boards and draw their wiring"),
    "selftest": ("selftest", "run the firmware's own checks on a board and print a table for a bug report"),
    "update": ("update", "send the firmware or a config to a board over MQTT; it commits or rolls back"),
}


def _top_parser():
    listing = "\n".join(f"  {name:10} {text}" for name, (_, text) in _COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="meterbridge", description="Toolkit for the meterbridge firmware.",
        epilog="commands:\n" + listing + "\n\n`meterbridge COMMAND --help` describes one command.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=_COMMANDS, metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    top = _top_parser().parse_args(argv)
    module, text = _COMMANDS[top.command]
    handler = importlib.import_module("meterbridge.commands." + module)
    parser = argparse.ArgumentParser(prog="meterbridge " + top.command, description=text)
    handler.add_arguments(parser)
    args = parser.parse_args(top.args)
    try:
        return handler.run(args) or 0
    except CommandError as e:
        print("meterbridge:", e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

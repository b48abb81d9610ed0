"""Byte links for the simulator: a pty that keeps real wire timing, or a real serial port (its opening, character
time and t3.5 are shared with scan)."""

import os
import termios
import time
import tty

import serial


def char_time(baud, parity):
    """Seconds one character takes on the wire: 10 bits at parity N, 11 with a parity bit."""
    return (10 if parity == "N" else 11) / baud


def frame_gap(baud):
    """Modbus t3.5: 3.5 characters of 11 bits, fixed at 1.75 ms above 19200 baud."""
    return 38.5 / baud if baud <= 19200 else 0.00175


def open_serial(port, baud, parity):
    """A non-blocking serial.Serial at baud 8{parity}1. A Linux pty (socat's too) refuses PARENB with EINVAL but
    keeps PARODD (drivers/tty/pty.c, pty_set_termios): there it opens without the bit, odd parity set so that the
    other end sees it, and the parity bit's time is still counted by char_time."""
    try:
        return serial.Serial(port, baud, parity=parity, timeout=0)
    except (termios.error, serial.SerialException):
        if parity == "N":
            raise
    bare = serial.Serial(port, baud, timeout=0)
    if parity == "O":
        attrs = termios.tcgetattr(bare.fd)
        attrs[2] |= termios.PARODD
        termios.tcsetattr(bare.fd, termios.TCSANOW, attrs)
    return bare


# termios speed constant -> baud, for the speeds a pty's other end may set
_SPEEDS = {getattr(termios, f"B{b}"): b for b in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)}


class PtyLink:
    """A pty pair whose slave end is symlinked at path; bytes reach the master at the baud's pace."""

    def __init__(self, path, baud, parity):
        self.name, self.baud, self.parity = path, baud, parity
        self.char = char_time(baud, parity)
        self._master, self._slave = os.openpty()  # holding the slave end keeps reads free of EIO
        tty.setraw(self._master)
        tty.setraw(self._slave)
        self._tty = os.ttyname(self._slave)
        if os.path.islink(path):
            os.unlink(path)
        os.symlink(self._tty, path)

    def fileno(self):
        """The master end, for select."""
        return self._master

    def read(self):
        """Whatever bytes the master has written."""
        return os.read(self._master, 4096)

    def line(self):
        """(baud, parities) the other end set: Linux keeps one termios per pty pair, so the master reads the
        speed the client chose; its pty driver drops PARENB (drivers/tty/pty.c, pty_set_termios) but keeps
        PARODD, so odd parity shows and even cannot be told from none."""
        attrs = termios.tcgetattr(self._master)
        return _SPEEDS.get(attrs[4]), ("O",) if attrs[2] & termios.PARODD else ("N", "E")

    def rx_lag(self, size, char=None):
        """Wire time of a size-byte request (char: seconds a character), which the pty delivered at once."""
        return size * (char or self.char)

    def send(self, data, start, char=None):
        """Write data so byte i arrives when it would on a wire started at monotonic time start."""
        char = char or self.char
        sent = 0
        while sent < len(data):
            due = min(len(data), int((time.monotonic() - start) / char))
            if due > sent:
                sent += os.write(self._master, data[sent:due])
            else:
                time.sleep(max(0.0, start + (sent + 1) * char - time.monotonic()))

    def close(self):
        """Close both ends and remove the symlink if it is still ours."""
        if os.path.islink(self.name) and os.readlink(self.name) == self._tty:
            os.unlink(self.name)
        os.close(self._master)
        os.close(self._slave)


class SerialLink:
    """A real serial port: the UART itself keeps the wire timing."""

    def __init__(self, port, baud, parity):
        self.name, self.baud, self.parity = port, baud, parity
        self.char = char_time(baud, parity)
        self._port = open_serial(port, baud, parity)

    def fileno(self):
        """The port's descriptor, for select."""
        return self._port.fileno()

    def read(self):
        """Whatever bytes have arrived."""
        return self._port.read(4096)

    def line(self):
        """(baud, parities) of the port: only meters at the port's own settings can hear it."""
        return self.baud, (self.parity,)

    def rx_lag(self, size, char=None):
        """Nothing to add: the request really took its wire time to arrive."""
        return 0.0

    def send(self, data, start, char=None):
        """Write data at monotonic time start and wait until it has left the UART."""
        time.sleep(max(0.0, start - time.monotonic()))
        self._port.write(data)
        self._port.flush()

    def close(self):
        """Close the port."""
        self._port.close()

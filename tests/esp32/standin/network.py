"""Stand-in for the ESP32 `network` module: WLAN and LAN that check their arguments and log their set-up.

The link comes up unless STANDIN_LINK=down. LOG lists (call, details) in order for the tests.
"""

import os

STA_IF = 0
AP_IF = 1
PHY_LAN8710 = 0  # network.PHY_* of the ESP32 port
PHY_LAN8720 = 1
PHY_IP101 = 2
PHY_RTL8201 = 3
PHY_DP83848 = 4
PHY_KSZ8041 = 5
PHY_KSZ8081 = 6

LOG = []
_name = ["mpy-esp32"]
_up = []  # interfaces with a link


def _link():
    return os.getenv("STANDIN_LINK", "up") == "up"


def hostname(name=None):
    if name is None:
        return _name[0]
    LOG.append(("hostname", name))
    _name[0] = name
    return None


def _pin_id(pin):
    return pin if isinstance(pin, int) else pin.id


class WLAN:
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2

    def __init__(self, interface_id=STA_IF):
        self._active = False
        self._joined = False
        self._config = {"reconnects": 0, "pm": self.PM_PERFORMANCE}
        LOG.append(("WLAN", interface_id))

    def active(self, is_active=None):
        if is_active is not None:
            self._active = bool(is_active)
            LOG.append(("WLAN.active", self._active))
        return self._active

    def config(self, *args, **kwargs):
        if args:
            return self._config[args[0]]
        for key in kwargs:
            if key not in ("reconnects", "pm", "txpower", "mac", "dhcp_hostname"):
                raise ValueError("unknown config param")
        self._config.update(kwargs)
        LOG.append(("WLAN.config", kwargs))
        return None

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._active:
            raise OSError("Wifi Not Started")
        LOG.append(("WLAN.connect", ssid, key))
        self._joined = True
        _up.append(self)

    def isconnected(self):
        return self._active and self._joined and _link()

    def ifconfig(self):
        return ("192.168.4.2", "255.255.255.0", "192.168.4.1", "192.168.4.1")


class LAN:
    def __init__(self, id=0, *, mdc, mdio, phy_addr, phy_type, power=None, reset=None, ref_clk=None,
                 ref_clk_mode=-1):
        if not 0 <= phy_addr <= 31:
            raise ValueError("invalid phy address")
        if phy_type not in range(7):
            raise ValueError("invalid phy type")
        self.setup = {"mdc": _pin_id(mdc), "mdio": _pin_id(mdio), "phy_addr": phy_addr, "phy_type": phy_type,
                      "power": None if power is None else _pin_id(power),
                      "ref_clk": None if ref_clk is None else _pin_id(ref_clk), "ref_clk_mode": ref_clk_mode}
        self._active = False
        LOG.append(("LAN", self.setup))
        _up.append(self)

    def active(self, is_active=None):
        if is_active is not None:
            self._active = bool(is_active)
            LOG.append(("LAN.active", self._active))
        return self._active

    def isconnected(self):
        return self._active and _link()

    def ifconfig(self):
        return ("10.0.0.7", "255.255.255.0", "10.0.0.1", "10.0.0.1")

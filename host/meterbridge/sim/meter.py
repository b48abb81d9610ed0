"""One simulated meter: a profile's register table fed by its own installation model."""

from .ocmf import IskraOcmf
from .physics import ThreePhase
from .table import RegisterTable


class Meter:
    """A slave on the line: profile name, installation model, and the registers it serves.

    max_read, holes (extra [first, last] ranges) and over_max ("exception": 03, "silent") play a meter
    that refuses reads its profile allows; baud and parity (None: the line's) its own line settings.
    """

    def __init__(self, profile, rng, key=None, max_read=None, holes=(), over_max="exception", baud=None,
                 parity=None):
        self.name = profile.get("name", "meter")
        self.baud, self.parity = baud, parity
        self.model = ThreePhase(rng)
        unknown = sorted(profile["fields"].keys() - self.model.values().keys())
        if unknown:
            raise ValueError(f"profile {self.name}: the simulator has no value for {', '.join(unknown)}")
        self.table = RegisterTable(profile, max_read, holes, over_max)
        self.table.load(self.model.values())
        self.ocmf = IskraOcmf(self.table, profile["ocmf"], key) if "ocmf" in profile else None

    def power_cut(self):
        """The meter loses power and comes back: its counters stay, a signing meter's clock does not."""
        if self.ocmf:
            self.ocmf.power_failure()

    def advance(self, dt):
        """Let dt seconds pass and serve the new values."""
        self.model.step(dt)
        self.table.load(self.model.values())

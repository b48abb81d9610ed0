"""A three-phase installation on a 230 V / 50 Hz grid whose loads wander, with energy counters."""

PHASES = ("L1", "L2", "L3")
MAX_AMPS = 32.0
DC_VOLTS = 400.0  # a DC link voltage of a charger's power stage
STEPS_A = (0.0, 6.0, 10.0, 13.0, 16.0, 20.0, 25.0, 32.0)


class ThreePhase:
    """Random-walk voltages, currents and frequency; energy integrates power, so imports only grow."""

    def __init__(self, rng):
        self._rng = rng
        self.volts = [230 + rng.uniform(-2, 2) for _ in PHASES]
        self.amps = [rng.uniform(0, MAX_AMPS) for _ in PHASES]
        self._target = list(self.amps)
        self._tan_phi = [rng.uniform(0.02, 0.2) for _ in PHASES]
        self._export_w = [rng.uniform(0.1, 2.0) for _ in PHASES]
        self.hz = 50 + rng.uniform(-0.05, 0.05)
        start = rng.uniform(500e3, 20e6)
        self.imported = [start * share for share in (0.34, 0.33, 0.33)]
        self.exported = [rng.uniform(0, 20e3) for _ in PHASES]

    def step(self, dt):
        """Advance dt seconds: integrate energy at the present powers, then let the loads move."""
        rng = self._rng
        for n in range(len(PHASES)):
            self.imported[n] += self.volts[n] * self.amps[n] * dt / 3600
            self.exported[n] += self._export_w[n] * dt / 3600
            if rng.random() < 0.05:
                self._target[n] = rng.choice(STEPS_A)
            amps = self.amps[n] + 0.3 * (self._target[n] - self.amps[n]) + rng.gauss(0, 0.1)
            self.amps[n] = min(max(amps, 0.0), MAX_AMPS)
            volts = self.volts[n] + 0.2 * (230 - self.volts[n]) + rng.gauss(0, 0.5)
            self.volts[n] = min(max(volts, 207.0), 253.0)
        self.hz = min(max(self.hz + 0.2 * (50 - self.hz) + rng.gauss(0, 0.01), 49.8), 50.2)

    def values(self):
        """Physical value of every Powermeter path the profiles use (W, V, A, Hz, var, Wh)."""
        out = {"frequency_Hz.L1": self.hz, "current_A.N": self._neutral()}
        for n, phase in enumerate(PHASES):
            watts = self.volts[n] * self.amps[n]
            out[f"voltage_V.{phase}"] = self.volts[n]
            out[f"current_A.{phase}"] = self.amps[n]
            out[f"power_W.{phase}"] = watts
            out[f"VAR.{phase}"] = watts * self._tan_phi[n]
            out[f"energy_Wh_import.{phase}"] = self.imported[n]
            out[f"energy_Wh_export.{phase}"] = self.exported[n]
        for quantity in ("power_W", "VAR", "energy_Wh_import", "energy_Wh_export"):
            out[f"{quantity}.total"] = sum(out[f"{quantity}.{phase}"] for phase in PHASES)
        # a DC meter behind the charger's rectifier sees the same power on its DC link
        out["voltage_V.DC"] = DC_VOLTS * self.volts[0] / 230
        out["current_A.DC"] = out["power_W.total"] / out["voltage_V.DC"]
        return out

    def _neutral(self):
        """Neutral current of three in-phase-with-voltage currents 120° apart."""
        a, b, c = self.amps
        return max(a * a + b * b + c * c - a * b - b * c - c * a, 0.0) ** 0.5

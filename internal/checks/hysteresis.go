package checks

// hysteresis turns probe outcomes into a state: fall consecutive failures
// take an up target down, rise consecutive successes bring a down target
// up. An outcome that agrees with the current state resets the count.
type hysteresis struct {
	rise, fall int
	up         bool
	streak     int // consecutive outcomes contradicting up
}

// observe records one probe outcome and reports whether the state changed.
func (h *hysteresis) observe(ok bool) bool {
	if ok == h.up {
		h.streak = 0
		return false
	}
	h.streak++
	need := h.rise
	if h.up {
		need = h.fall
	}
	if h.streak < need {
		return false
	}
	h.up, h.streak = ok, 0
	return true
}

"""Models: the AdcSR student, the teachers, and the SD-family building blocks they share."""

"""The RASP programs we study, each with an independent Python reference and its compiled model."""

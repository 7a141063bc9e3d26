"""The built-in demo: a card-transaction fraud stream and the closed loop run on it (`loopml demo`)."""

"""A synthetic look-alike of CelebAMask-HQ for tests and demos: imported only by ``celebamask
synth``, the tests and the benchmark, never on the build's or the reader's path."""

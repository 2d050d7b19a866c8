"""Looking at a trained generator: ``ganexp sample`` (``generate``, ``steer``, ``walks``) and
``ganexp eval`` (``evaluate``), both on models rebuilt from a checkpoint (``rebuild``)."""

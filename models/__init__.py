"""The DiffSep system: the Lightning module (``diffsep``), training strategies, EMA,
the checkpoint format (``loading``) and the shipped models (``pretrained``). The networks
live in ``networks/``; ``models.ncsnpp``, ``models.frame_rnn``, ``models.cdiffuse`` and
``models.score_model`` are kept as aliases for the ``_target_`` paths of checkpoints
written before they moved."""

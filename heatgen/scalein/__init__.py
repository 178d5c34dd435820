"""Scale-in that never removes a busy worker: the pure choice (:mod:`.choice`) and the guarded
shrink that acts on it (:mod:`.shrink`)."""

"""How far the model can be trusted: the literature rows (:mod:`.literature`), calibration
(:mod:`.calibrate`), validation (:mod:`.validate`, :mod:`.delivery`), the check of the homogenised
transport against the resolved unit cell (:mod:`.transport_check`) and the credibility report's data
(:mod:`.report`)."""

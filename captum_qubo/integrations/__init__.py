"""Adapters that let other libraries call our explainers: Quantus (:mod:`.quantus`) and Lightning's distributed
predict over a whole dataset (:mod:`.dataset`)."""

"""Zero-shot classification and tags: the model already in the index, asked which of some words fit a photo.

``templates``  prompt templates a label is embedded through (photo, imagenet, none)
``vocabulary`` label lists: the built-in one (clipsearch/assets/vocabulary.txt), a user's file, a comma list
``labels``     a label set embedded by a text tower, cached per model; ranking with the model's logit scale
``tagging``    the rule that turns a photo's label scores into its tags
"""

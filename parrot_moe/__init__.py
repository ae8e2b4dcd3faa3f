"""Parrot: text-guided multilingual Mixture-of-Experts projector, a plugin of the llava core."""

"""Server side of end-to-end encryption: keys, device lists, to-device, cross-signing, backup."""

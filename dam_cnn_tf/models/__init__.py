"""The models of DAM-CNN: backbone, VGG-SERD (stage 1), MPAE and MPVS-Net (stage 2)."""

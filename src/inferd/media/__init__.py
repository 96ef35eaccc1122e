"""Media inputs: fetching image/video URLs safely, decoding images and sampling video frames."""

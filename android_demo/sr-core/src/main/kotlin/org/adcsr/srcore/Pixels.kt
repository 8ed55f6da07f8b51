package org.adcsr.srcore

/** Android's ARGB_8888 pixels (one Int per pixel, as `Bitmap.getPixels` gives them) ↔ RGB
 * [FloatImage]s in [0, 1]: value / 255 in, round-half-even of clamp(value) · 255 out, exactly as
 * `adcsr.core.imaging` reads and writes 8-bit images. Alpha is dropped on the way in and opaque
 * on the way out. */
object Pixels {
    fun toImage(argb: IntArray, width: Int, height: Int): FloatImage {
        require(argb.size == width * height) { "${argb.size} pixels is not ${width}×$height" }
        val img = FloatImage(3, height, width)
        val plane = width * height
        for (i in 0 until plane) {
            val p = argb[i]
            img.data[i] = ((p ushr 16) and 0xFF).toFloat() / 255f
            img.data[plane + i] = ((p ushr 8) and 0xFF).toFloat() / 255f
            img.data[2 * plane + i] = (p and 0xFF).toFloat() / 255f
        }
        return img
    }

    /** One channel value in [0, 1] → 0..255, rounded half to even (torch.round's rule). */
    fun toByte(v: Float): Int = Math.rint((v.coerceIn(0f, 1f) * 255f).toDouble()).toInt()

    /** Rows [top, top + rows) of an RGB image as ARGB_8888 pixels. */
    fun toArgb(img: FloatImage, top: Int = 0, rows: Int = img.height): IntArray {
        require(img.channels == 3) { "ARGB needs 3 channels, got ${img.channels}" }
        val w = img.width
        val out = IntArray(rows * w)
        for (y in 0 until rows) for (x in 0 until w) {
            val r = toByte(img[0, top + y, x])
            val g = toByte(img[1, top + y, x])
            val b = toByte(img[2, top + y, x])
            out[y * w + x] = (0xFF shl 24) or (r shl 16) or (g shl 8) or b
        }
        return out
    }
}

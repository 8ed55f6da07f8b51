package org.adcsr.srcore

/** The golden test's deterministic ×4 model, defined identically in tests/test_android_core.py:
 * a 3×3 convolution (3 → 48 channels, zero padding) with dyadic weights, then pixel shuffle ×4.
 * Dyadic weights and inputs keep every value on a 2⁻¹² grid below 1 (12 significant bits), so
 * every product with a blending weight (12 bits) and every sum is exact in float32, in both languages. */
class ToyConvModel(override val tile: Int, override val multiple: Int = 4) : SrModel {
    override val name = "toy conv ×4"
    override val scale = 4

    fun weight(o: Int, c: Int, ky: Int, kx: Int): Float = (((o * 7 + c * 3 + ky * 5 + kx * 11) % 3) - 1) / 64f
    fun bias(o: Int): Float = 0.5f + ((o % 5) - 2) / 64f

    override fun upscaleTile(lr: FloatImage): FloatImage {
        val h = lr.height
        val w = lr.width
        val out = FloatImage(3, h * 4, w * 4)
        for (o in 0 until 48) for (y in 0 until h) for (x in 0 until w) {
            var acc = bias(o)
            for (c in 0 until 3) for (ky in 0 until 3) for (kx in 0 until 3) {
                val sy = y + ky - 1
                val sx = x + kx - 1
                if (sy in 0 until h && sx in 0 until w) acc += weight(o, c, ky, kx) * lr[c, sy, sx]
            }
            val c = o / 16
            val dy = (o % 16) / 4
            val dx = o % 4
            out[c, y * 4 + dy, x * 4 + dx] = acc
        }
        return out
    }
}

/** Nearest-neighbour ×scale: a model whose SR is known exactly. */
class NearestModel(override val tile: Int, override val scale: Int = 4, override val multiple: Int = 1) : SrModel {
    override val name = "nearest"
    override fun upscaleTile(lr: FloatImage): FloatImage {
        val out = FloatImage(3, lr.height * scale, lr.width * scale)
        for (c in 0 until 3) for (y in 0 until out.height) for (x in 0 until out.width) out[c, y, x] = lr[c, y / scale, x / scale]
        return out
    }
}

/** A model that knows where its tile ends: adds a ramp across the tile, so tiles disagree at
 * their borders unless the blending hides it. */
class BorderBiasedModel(override val tile: Int) : SrModel {
    override val name = "border-biased"
    override val scale = 4
    override val multiple = 1
    private val inner = NearestModel(tile)
    override fun upscaleTile(lr: FloatImage): FloatImage {
        val out = inner.upscaleTile(lr)
        for (c in 0 until 3) for (y in 0 until out.height) for (x in 0 until out.width) out[c, y, x] += 0.02f * x / out.width
        return out
    }
}

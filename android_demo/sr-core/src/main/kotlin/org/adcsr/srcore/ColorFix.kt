package org.adcsr.srcore

import kotlin.math.floor
import kotlin.math.sqrt

/**
 * Colour correction of a whole SR image towards its LR input, as `adcsr.core.colorfix` does it:
 * applied once per image (per tile it would give every tile its own correction, and seams).
 * ADAIN matches each channel's mean and (unbiased) standard deviation to the LR's (the AdcSR
 * release's fix, the student's default); WAVELET keeps the SR's high frequencies and takes the
 * low ones from the LR upsampled bicubically (à trous wavelet, 5 levels).
 */
enum class ColorFix {
    NONE, ADAIN, WAVELET;

    fun apply(sr: FloatImage, lr: FloatImage): FloatImage = when (this) {
        NONE -> sr
        ADAIN -> adain(sr, lr)
        WAVELET -> wavelet(sr, lr)
    }

    companion object {
        private const val EPS = 1e-5f

        fun parse(name: String): ColorFix = when (name) {
            "none" -> NONE
            "adain" -> ADAIN
            "wavelet" -> WAVELET
            else -> throw IllegalArgumentException("unknown colour fix '$name' (choose from none, adain, wavelet)")
        }

        /** (mean, unbiased std) of channel [c], summed in double. */
        fun stats(img: FloatImage, c: Int): Pair<Double, Double> {
            val n = img.height * img.width
            var sum = 0.0
            var squares = 0.0
            for (k in c * n until (c + 1) * n) {
                val v = img.data[k].toDouble()
                sum += v
                squares += v * v
            }
            val mean = sum / n
            return mean to sqrt(maxOf(0.0, (squares - sum * mean) / maxOf(n - 1, 1)))
        }

        /** The per-channel (gain, offset) AdaIN applies: out = (sr − mean_sr) · gain + mean_lr. */
        fun adainCoefficients(srStats: List<Pair<Double, Double>>, lr: FloatImage): List<Pair<Float, Float>> =
            (0 until 3).map { c ->
                val (lm, ls) = stats(lr, c)
                val (sm, ss) = srStats[c]
                (ls.toFloat() / (ss.toFloat() + EPS)) to (lm.toFloat() - sm.toFloat() * ls.toFloat() / (ss.toFloat() + EPS))
            }

        fun adain(sr: FloatImage, lr: FloatImage): FloatImage {
            val coeff = adainCoefficients((0 until 3).map { stats(sr, it) }, lr)
            val out = FloatImage(3, sr.height, sr.width)
            val n = sr.height * sr.width
            for (c in 0 until 3) {
                val (gain, offset) = coeff[c]
                for (k in c * n until (c + 1) * n) out.data[k] = sr.data[k] * gain + offset
            }
            return out
        }

        /** One à trous step: the [1 2 1]ᵀ[1 2 1]/16 kernel with holes of [dilation], edges replicated. */
        fun waveletBlur(img: FloatImage, dilation: Int): FloatImage {
            val k = floatArrayOf(0.25f, 0.5f, 0.25f)
            val out = FloatImage(img.channels, img.height, img.width)
            for (c in 0 until img.channels) for (y in 0 until img.height) for (x in 0 until img.width) {
                var acc = 0f
                for (dy in -1..1) {
                    val sy = (y + dy * dilation).coerceIn(0, img.height - 1)
                    for (dx in -1..1) {
                        val sx = (x + dx * dilation).coerceIn(0, img.width - 1)
                        acc += k[dy + 1] * k[dx + 1] * img[c, sy, sx]
                    }
                }
                out[c, y, x] = acc
            }
            return out
        }

        fun lowPass(img: FloatImage, levels: Int = 5): FloatImage {
            var low = img
            for (i in 0 until levels) low = waveletBlur(low, 1 shl i)
            return low
        }

        fun wavelet(sr: FloatImage, lr: FloatImage, levels: Int = 5): FloatImage {
            val up = if (lr.height == sr.height && lr.width == sr.width) lr else bicubic(lr, sr.height, sr.width, clamp = true)
            val srLow = lowPass(sr, levels)
            val lrLow = lowPass(up, levels)
            val out = FloatImage(3, sr.height, sr.width)
            for (k in out.data.indices) out.data[k] = (sr.data[k] - srLow.data[k]) + lrLow.data[k]
            return out
        }

        private fun cubic(t: Float): FloatArray {  // Keys' kernel with a = −0.75, as torch's bicubic
            val a = -0.75f
            fun near(x: Float) = ((a + 2) * x - (a + 3)) * x * x + 1
            fun far(x: Float) = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
            return floatArrayOf(far(t + 1), near(t), near(1 - t), far(2 - t))
        }

        /** Bicubic resize as torch's `F.interpolate(mode="bicubic", align_corners=False)`. */
        fun bicubic(img: FloatImage, outH: Int, outW: Int, clamp: Boolean = false): FloatImage {
            fun taps(outN: Int, inN: Int): Pair<IntArray, Array<FloatArray>> {
                val scale = inN.toFloat() / outN
                val first = IntArray(outN)
                val weights = Array(outN) { d ->
                    val src = (d + 0.5f) * scale - 0.5f
                    val x0 = floor(src).toInt()
                    first[d] = x0 - 1
                    cubic(src - x0)
                }
                return first to weights
            }
            val (fy, wy) = taps(outH, img.height)
            val (fx, wx) = taps(outW, img.width)
            val rows = FloatImage(img.channels, img.height, outW)
            for (c in 0 until img.channels) for (y in 0 until img.height) for (x in 0 until outW) {
                var acc = 0f
                for (k in 0 until 4) acc += wx[x][k] * img[c, y, (fx[x] + k).coerceIn(0, img.width - 1)]
                rows[c, y, x] = acc
            }
            val out = FloatImage(img.channels, outH, outW)
            for (c in 0 until img.channels) for (y in 0 until outH) for (x in 0 until outW) {
                var acc = 0f
                for (k in 0 until 4) acc += wy[y][k] * rows[c, (fy[y] + k).coerceIn(0, img.height - 1), x]
                out[c, y, x] = if (clamp) acc.coerceIn(0f, 1f) else acc
            }
            return out
        }
    }
}

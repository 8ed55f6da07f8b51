package org.adcsr.srcore

/** A ×[scale] super-resolution model as the tiler drives it; the app's backends (QNN on the HTP
 * through ONNX Runtime, ExecuTorch on the CPU) implement it. */
interface SrModel : AutoCloseable {
    /** What the settings screen and the result show, e.g. "QNN HTP (SM8750)". */
    val name: String
    val scale: Int
    /** The LR tile side the model was exported for (artifacts take exactly this). */
    val tile: Int
    /** LR sides are padded to a multiple of this. */
    val multiple: Int

    /** One LR tile (3 × tile × tile in [0, 1]) → its SR tile (3 × tile·scale × tile·scale). */
    fun upscaleTile(lr: FloatImage): FloatImage

    override fun close() {}
}

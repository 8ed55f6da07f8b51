package org.adcsr.demo.backends

import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import org.adcsr.srcore.FloatImage
import org.adcsr.srcore.ModelContract
import org.adcsr.srcore.SrModel
import java.io.File
import java.nio.FloatBuffer

/** The QNN context model (EPContext `student_ctx.onnx` + its `.bin` files) on the Hexagon NPU,
 * through ONNX Runtime's QNN execution provider. CPU fallback is disabled: the model runs wholly
 * on the HTP, as the export verified on the emulator, or the session fails to open. */
class OrtQnnModel(file: File, contract: ModelContract, override val name: String) : SrModel {
    override val scale = contract.scale
    override val tile = contract.tile
    override val multiple = contract.multiple
    private val inputName = contract.inputName
    private val env = OrtEnvironment.getEnvironment()
    private val session: OrtSession

    init {
        val options = OrtSession.SessionOptions()
        options.addQnn(mapOf("backend_path" to "libQnnHtp.so", "htp_performance_mode" to "burst"))
        options.addConfigEntry("session.disable_cpu_ep_fallback", "1")
        session = env.createSession(file.absolutePath, options)
    }

    override fun upscaleTile(lr: FloatImage): FloatImage {
        val shape = longArrayOf(1, 3, lr.height.toLong(), lr.width.toLong())
        OnnxTensor.createTensor(env, FloatBuffer.wrap(lr.data), shape).use { input ->
            session.run(mapOf(inputName to input)).use { result ->
                val sr = FloatImage(3, lr.height * scale, lr.width * scale)
                (result[0] as OnnxTensor).floatBuffer.get(sr.data)
                return sr
            }
        }
    }

    override fun close() = session.close()
}

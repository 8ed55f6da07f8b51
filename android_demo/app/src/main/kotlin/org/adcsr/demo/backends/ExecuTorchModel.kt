package org.adcsr.demo.backends

import org.adcsr.srcore.FloatImage
import org.adcsr.srcore.ModelContract
import org.adcsr.srcore.SrModel
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import java.io.File

/** An ExecuTorch program: the XNNPACK `.pte` on the CPU (or a QNN `.pte` with the -qnn AAR). */
class ExecuTorchModel(file: File, contract: ModelContract, override val name: String) : SrModel {
    override val scale = contract.scale
    override val tile = contract.tile
    override val multiple = contract.multiple
    private val module = Module.load(file.absolutePath)

    override fun upscaleTile(lr: FloatImage): FloatImage {
        val input = Tensor.fromBlob(lr.data, longArrayOf(1, 3, lr.height.toLong(), lr.width.toLong()))
        val out = module.forward(EValue.from(input))[0].toTensor().dataAsFloatArray
        return FloatImage(3, lr.height * scale, lr.width * scale, out)
    }

    override fun close() = module.destroy()
}
